"""Every registered scoring method meets one contract (parametrised over `list_methods()`):
identification scores are finite [P, I]; with one gallery image per identity they equal the
method's pair scores of the same (probe, gallery) pairs (composite methods normalise differently
and are checked for shape only); a model that lacks what a method needs is told why."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from occtool.evaluation import Scoring, create_method, features_from_maps, list_methods
from occtool.evaluation.methods import IdentContext, PairContext, resolve_methods
from occtool.errors import ConfigError
from occtool.matching import QAConvMatcher
from occtool.matching.visibility_matched import output_layer_bias
from occtool.models import FaceModel, build_backbone

P, G = 5, 4


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = FaceModel(backbone=build_backbone("mobilefacenet"), neck_channels=16).eval()
    maps = torch.rand(P + G, 512, 7, 7)
    views = [maps, torch.flip(maps, dims=[3])]
    feats = features_from_maps(model, views, device="cpu", with_maps=True, with_contributions=True)
    scoring = Scoring(matcher=QAConvMatcher(num_features=16, height=7, width=7).eval(), has_visibility=True,
                      output_layer_affine=True, matched_bias=output_layer_bias(model.backbone), views=2)
    return feats, scoring


def _split(feats):
    from occtool.evaluation.extract import Features

    def rows(idx):
        sel = torch.as_tensor(idx)
        pick = lambda t: None if t is None else t[sel]  # noqa: E731
        return Features(embeddings=feats.embeddings[sel], match_maps=pick(feats.match_maps),
                        occlusion=pick(feats.occlusion), ok_mask=np.ones(len(idx), bool), paths=[], hashes=[],
                        occ_embeddings=pick(feats.occ_embeddings), contributions=pick(feats.contributions),
                        visibility_views=pick(feats.visibility_views))

    return rows(np.arange(P)), rows(np.arange(P, P + G))


@pytest.mark.parametrize("name", list_methods())
def test_method_contract(name, setup):
    feats, scoring = setup
    method = create_method(name)
    assert method.name == name and method.unavailable(scoring) is None
    for f in method.needs:
        assert getattr(feats, f) is not None, f
    probes, gallery = _split(feats)
    ctx = IdentContext(probes=probes, gallery=gallery, p_rows=np.arange(P), g_rows=np.arange(G),
                       g_labels=np.arange(G), true_ids=np.array([0, 1, 2, 3, -1]), n_ids=G, scoring=scoring,
                       device=torch.device("cpu"), requested=(name,))
    ident = method.identity_scorer(ctx).identity_scores(slice(0, P)).double().numpy()
    assert ident.shape == (P, G) and np.isfinite(ident).all()
    ia, ib = np.repeat(np.arange(P), G), np.tile(np.arange(P, P + G), P)
    pairs = method.pair_scores(PairContext(feats=feats, ia=ia, ib=ib, scoring=scoring, device=torch.device("cpu"),
                                           requested=(name,)))
    assert pairs.shape == (P * G,) and np.isfinite(pairs).all()
    if not getattr(method, "composite", False):
        np.testing.assert_allclose(ident.reshape(-1), pairs, atol=2e-5)


@pytest.mark.parametrize("name", list_methods())
def test_unavailable_methods_say_why(name):
    bare = Scoring()  # no matcher, no visibility
    why = create_method(name).unavailable(bare)
    if name == "cosine":
        assert why is None
    else:
        assert isinstance(why, str) and why
        with pytest.raises(ConfigError, match=name):
            resolve_methods([name], bare)


def test_default_methods_leave_on_request_ones_out(setup):
    _, scoring = setup
    auto = resolve_methods(None, scoring)
    on_request = ("fused", "fused_matched")
    assert not set(on_request) & set(auto) and auto == [m for m in list_methods() if m not in on_request]
    assert resolve_methods("fused,cosine,fused", scoring) == ["fused", "cosine"]


def test_fused_matched_is_the_z_sum_of_its_parts(setup):
    """fused_matched = z(cosine_occ_matched) + w * z(qaconv_occ) per probe row (identification)
    and over all pairs (pairs), from the parts' own scores."""
    import dataclasses

    from occtool.evaluation.scoring import znorm_global

    feats, scoring = setup
    scoring = dataclasses.replace(scoring, fusion_weight=0.3)
    probes, gallery = _split(feats)
    ctx = lambda name: IdentContext(probes=probes, gallery=gallery, p_rows=np.arange(P), g_rows=np.arange(G),  # noqa: E731
                                    g_labels=np.arange(G), true_ids=np.array([0, 1, 2, 3, -1]), n_ids=G,
                                    scoring=scoring, device=torch.device("cpu"), requested=(name,))
    part = {n: create_method(n).identity_scorer(ctx(n)).identity_scores(slice(0, P)).double()
            for n in ("cosine_occ_matched", "qaconv_occ")}
    z = lambda m: (m - m.mean(1, keepdim=True)) / m.std(1, keepdim=True)  # noqa: E731
    got = create_method("fused_matched").identity_scorer(ctx("fused_matched")).identity_scores(slice(0, P)).double()
    assert torch.allclose(got, z(part["cosine_occ_matched"]) + 0.3 * z(part["qaconv_occ"]), atol=1e-5)
    ia, ib = np.arange(P), np.arange(G).repeat(2)[:P] + P
    pctx = lambda name: PairContext(feats=feats, ia=ia, ib=ib, scoring=scoring, device=torch.device("cpu"),  # noqa: E731
                                    requested=(name,))
    sep = {n: create_method(n).pair_scores(pctx(n)) for n in ("cosine_occ_matched", "qaconv_occ")}
    pairs = create_method("fused_matched").pair_scores(pctx("fused_matched"))
    assert np.allclose(pairs, znorm_global(sep["cosine_occ_matched"]) + 0.3 * znorm_global(sep["qaconv_occ"]))


def test_cosine_occ_matched_uses_the_scorings_visibility_exponent(setup):
    """Scoring.visibility_exponent reaches the scorer: identification and pair scores equal the
    scorer's at that exponent, and 1 and 0.5 differ."""
    import dataclasses

    from occtool.matching.visibility_matched import DEFAULT_VISIBILITY_EXPONENT, VisibilityMatchedScorer

    feats, scoring = setup
    assert scoring.visibility_exponent == DEFAULT_VISIBILITY_EXPONENT == 0.5
    probes, gallery = _split(feats)
    got = {}
    for e in (1.0, 0.5):
        sc = dataclasses.replace(scoring, visibility_exponent=e)
        ctx = IdentContext(probes=probes, gallery=gallery, p_rows=np.arange(P), g_rows=np.arange(G), g_labels=np.arange(G),
                           true_ids=np.array([0, 1, 2, 3, -1]), n_ids=G, scoring=sc, device=torch.device("cpu"),
                           requested=("cosine_occ_matched",))
        got[e] = create_method("cosine_occ_matched").identity_scorer(ctx).identity_scores(slice(0, P))
        direct = VisibilityMatchedScorer(bias=sc.matched_bias, views=2, visibility_exponent=e).score(
            probes.contributions, gallery.contributions, probes.visibility_views, gallery.visibility_views)
        torch.testing.assert_close(got[e], direct, rtol=1e-5, atol=1e-6)
        pairs = create_method("cosine_occ_matched").pair_scores(PairContext(
            feats=feats, ia=np.arange(P), ib=P + np.arange(P) % G, scoring=sc, device=torch.device("cpu"),
            requested=("cosine_occ_matched",)))
        np.testing.assert_allclose(pairs, direct[np.arange(P), np.arange(P) % G].numpy(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got[1.0], got[0.5])
