"""Visibility-matched embeddings: against a slow per-pair reference through the real output
layer, the all-visible case, the affinity check, chunking, and the input checks."""

import pytest
import torch
import torch.nn.functional as F

from occtool.errors import OcctoolError
from occtool.matching.visibility_matched import (
    VisibilityMatchedScorer,
    is_affine,
    matched_weights,
    output_layer_bias,
    output_layer_contributions,
    output_layer_jacobian,
)
from occtool.models import build_backbone


@pytest.fixture(params=["fused", "eager"])
def matched_path(request, monkeypatch):
    """Run a test through the fused numba kernels (the CPU default) and through the eager ops
    (CUDA, or a machine without numba)."""
    from occtool.matching import kernels

    if request.param == "fused":
        if kernels.load() is None:
            pytest.skip("numba is not installed: no fused kernels")
    else:
        monkeypatch.setattr(kernels, "load", lambda: None)
    return request.param


@pytest.fixture(scope="module")
def mfn():
    torch.manual_seed(0)
    bb = build_backbone("mobilefacenet").eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial BN statistics, so the bias b is not ~0
        for m in bb.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return bb


def _views(bb, n, seed):
    """maps [N, V=2, C, H, W] and visibility [N, V, H, W] (view 1 plays the mirror)."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn((n, 2, bb.feature_channels, *bb.feature_size), generator=g)
    vis = torch.rand((n, 2, *bb.feature_size), generator=g)
    vis[0] = 1.0  # one fully visible image
    if n > 1:
        vis[1, :, 4:] = 0.0  # one with its lower face hidden
    return maps, vis


_JACOBIANS: dict = {}


def _jacobian(bb):
    if id(bb) not in _JACOBIANS:  # once per model, as callers do
        _JACOBIANS[id(bb)] = output_layer_jacobian(bb)
    return _JACOBIANS[id(bb)]


def _prepare(bb, maps, vis):
    jac = _jacobian(bb)
    contrib = torch.cat([output_layer_contributions(bb, maps[:, v], jacobian=jac) for v in range(maps.shape[1])], dim=1)
    return contrib, vis.flatten(1)


def _reference(bb, maps_p, vis_p, maps_g, vis_g):
    """Slow and obvious: for each pair, run the output layer on fm * w per view with
    w = v_p * v_g rescaled to the smaller face's visible mass, sum the views' raw embeddings,
    cosine."""
    out = torch.zeros(len(maps_p), len(maps_g))
    with torch.no_grad():
        for i in range(len(maps_p)):
            for j in range(len(maps_g)):
                rp = rg = 0
                for v in range(maps_p.shape[1]):
                    w = vis_p[i, v] * vis_g[j, v]
                    w = (w * min(vis_p[i, v].sum(), vis_g[j, v].sum()) / w.sum())[None, None]
                    rp = rp + bb.embed_raw(maps_p[i, v][None] * w)[0]
                    rg = rg + bb.embed_raw(maps_g[j, v][None] * w)[0]
                out[i, j] = F.cosine_similarity(rp, rg, dim=0)
    return out


def test_scores_match_slow_reference(mfn, matched_path):
    mp, vp = _views(mfn, 3, seed=2)
    mg, vg = _views(mfn, 4, seed=3)
    cp, wp = _prepare(mfn, mp, vp)
    cg, wg = _prepare(mfn, mg, vg)
    assert cp.shape == (3, 2 * 49, mfn.embedding_dim) and wp.shape == (3, 2 * 49)
    scorer = VisibilityMatchedScorer(bias=output_layer_bias(mfn), views=2)
    got = scorer.score(cp, cg, wp, wg)
    assert got.shape == (3, 4)
    torch.testing.assert_close(got, _reference(mfn, mp, vp, mg, vg), rtol=1e-4, atol=1e-5)
    # aligned pairs = the diagonal; probe chunking changes nothing
    torch.testing.assert_close(scorer.pair_scores(cp, cg[:3], wp, wg[:3]), torch.diagonal(got[:, :3]), rtol=1e-5, atol=1e-6)
    tiny = VisibilityMatchedScorer(bias=output_layer_bias(mfn), views=2, chunk_bytes=1)
    torch.testing.assert_close(tiny.score(cp, cg, wp, wg), got, rtol=1e-6, atol=1e-6)


def test_visibility_exponent_matches_through_the_powered_visibility(mfn):
    """exponent a: the slow reference run on v**a (partly visible locations weigh more, 0 and 1
    stay); 1 is the plain method; a bad exponent is refused."""
    mp, vp = _views(mfn, 3, seed=12)
    mg, vg = _views(mfn, 2, seed=13)
    cp, wp = _prepare(mfn, mp, vp)
    cg, wg = _prepare(mfn, mg, vg)
    bias = output_layer_bias(mfn)
    got = VisibilityMatchedScorer(bias=bias, views=2, visibility_exponent=0.5).score(cp, cg, wp, wg)
    torch.testing.assert_close(got, _reference(mfn, mp, vp.sqrt(), mg, vg.sqrt()), rtol=1e-4, atol=1e-5)
    plain = VisibilityMatchedScorer(bias=bias, views=2)
    assert torch.equal(VisibilityMatchedScorer(bias=bias, views=2, visibility_exponent=1.0).score(cp, cg, wp, wg),
                       plain.score(cp, cg, wp, wg))
    assert not torch.allclose(got, plain.score(cp, cg, wp, wg))
    pairs = VisibilityMatchedScorer(bias=bias, views=2, visibility_exponent=0.5).pair_scores(cp[:2], cg, wp[:2], wg)
    torch.testing.assert_close(pairs, torch.diagonal(got[:2]), rtol=1e-5, atol=1e-6)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(OcctoolError, match="visibility_exponent must be > 0"):
            VisibilityMatchedScorer(bias=bias, views=2, visibility_exponent=bad)


def test_all_visible_equals_plain_embedding_cosine(mfn):
    mp, _ = _views(mfn, 2, seed=4)
    mg, _ = _views(mfn, 3, seed=5)
    ones_p, ones_g = torch.ones(2, 2, 7, 7), torch.ones(3, 2, 7, 7)
    cp, wp = _prepare(mfn, mp, ones_p)
    cg, wg = _prepare(mfn, mg, ones_g)
    got = VisibilityMatchedScorer(bias=output_layer_bias(mfn), views=2).score(cp, cg, wp, wg)
    with torch.no_grad():
        ep = F.normalize(mfn.embed_raw(mp[:, 0]) + mfn.embed_raw(mp[:, 1]), dim=1)
        eg = F.normalize(mfn.embed_raw(mg[:, 0]) + mfn.embed_raw(mg[:, 1]), dim=1)
    torch.testing.assert_close(got, ep @ eg.T, rtol=1e-4, atol=1e-5)


def test_occluded_region_is_ignored_on_both_sides(mfn):
    """Where the probe is invisible, changing the gallery face there changes nothing."""
    mp, vp = _views(mfn, 1, seed=6)
    mg, vg = _views(mfn, 1, seed=7)
    vp[:, :, 4:] = 0.0
    scorer = VisibilityMatchedScorer(bias=output_layer_bias(mfn), views=2)
    a = scorer.score(*_swap(_prepare(mfn, mp, vp), _prepare(mfn, mg, vg)))
    mg2 = mg.clone()
    mg2[..., 4:, :] = torch.randn_like(mg2[..., 4:, :]) * 5
    b = scorer.score(*_swap(_prepare(mfn, mp, vp), _prepare(mfn, mg2, vg)))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_weights_rescaled_to_the_smaller_visible_mass_and_no_overlap_scores_zero(mfn):
    vp = torch.zeros(1, 2 * 49)
    vp[0, :20] = 1.0  # view 0: upper part visible; view 1: nothing
    vp[0, 49:69] = 0.5
    vg = torch.ones(1, 2 * 49)
    w, ok = matched_weights(vp, vg, views=2)
    torch.testing.assert_close(w, vp)  # a fully visible gallery face: w' = v_probe, unchanged
    assert ok.all()
    vg2 = torch.zeros(1, 98)
    vg2[0, 10:30] = 1.0
    vg2[0, 59:79] = 1.0
    w2, _ = matched_weights(vp, vg2, views=2)
    torch.testing.assert_close(w2[0, :49].sum(), torch.tensor(20.0))  # min(20, 20) per view
    torch.testing.assert_close(w2[0, 49:].sum(), torch.tensor(10.0))  # min(10, 20)
    assert (w2[0, 30:49] == 0).all() and (w2[0, :10] == 0).all()
    # disjoint visibility: no evidence -> 0, not the cos(b, b) = 1 that w = 0 would give
    mp, _ = _views(mfn, 1, seed=8)
    mg, _ = _views(mfn, 1, seed=9)
    upper, lower = torch.zeros(1, 2, 7, 7), torch.zeros(1, 2, 7, 7)
    upper[..., :3, :] = 1
    lower[..., 4:, :] = 1
    scorer = VisibilityMatchedScorer(bias=output_layer_bias(mfn), views=2)
    cp, wp = _prepare(mfn, mp, upper)
    cg, wg = _prepare(mfn, mg, lower)
    assert scorer.score(cp, cg, wp, wg).item() == 0.0
    assert scorer.pair_scores(cp, cg, wp, wg).item() == 0.0
    # a nearly disjoint pair does not collapse to 1 either (the rescaling keeps the mass)
    lower[..., 2, 0] = 1e-2
    cg, wg = _prepare(mfn, mg, lower)
    assert abs(scorer.score(cp, cg, wp, wg).item()) < 0.9


def _swap(p, g):
    return p[0], g[0], p[1], g[1]


def test_jacobian_contributions_equal_one_location_at_a_time(mfn):
    """The Jacobian route against the definition c[l] = raw(fm * onehot_l) - b."""
    maps = torch.randn(2, mfn.feature_channels, *mfn.feature_size, generator=torch.Generator().manual_seed(11))
    got = output_layer_contributions(mfn, maps)  # computes the Jacobian itself
    torch.testing.assert_close(output_layer_contributions(mfn, maps, jacobian=_jacobian(mfn)), got)
    b = output_layer_bias(mfn)
    with torch.no_grad():
        for l in (0, 17, 48):
            onehot = torch.zeros(1, 1, 49)
            onehot[0, 0, l] = 1
            want = mfn.embed_raw(maps * onehot.view(1, 1, 7, 7)) - b
            torch.testing.assert_close(got[:, l], want, rtol=1e-4, atol=1e-5)
    with pytest.raises(OcctoolError, match="expected"):
        output_layer_contributions(mfn, maps[:, :8], jacobian=_jacobian(mfn))


def test_is_affine_true_for_backbones_and_false_for_a_nonlinear_head(mfn):
    assert is_affine(mfn)
    assert is_affine(build_backbone("ir18").eval())

    class Squared(torch.nn.Module):
        feature_channels, feature_size = 4, (2, 2)

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(16, 3)

        def embed_raw(self, fm):
            return self.lin(fm.flatten(1)) ** 2

    assert not is_affine(Squared())


def test_input_checks(mfn):
    scorer = VisibilityMatchedScorer(bias=output_layer_bias(mfn), views=1)
    c = torch.zeros(2, 49, mfn.embedding_dim)
    with pytest.raises(OcctoolError, match=r"expected contributions \[N, VL, D\]"):
        scorer.score(c, c, torch.ones(2, 48), torch.ones(2, 49))
    with pytest.raises(OcctoolError, match="need the visibility"):
        scorer.score(c, c)
    with pytest.raises(OcctoolError, match="disagree"):
        scorer.score(c, torch.zeros(2, 49, 256), torch.ones(2, 49), torch.ones(2, 49))
    with pytest.raises(OcctoolError, match="do not split into 2 views"):
        VisibilityMatchedScorer(bias=output_layer_bias(mfn), views=2).score(c, c, torch.ones(2, 49), torch.ones(2, 49))
    with pytest.raises(OcctoolError, match="views must be"):
        VisibilityMatchedScorer(bias=torch.zeros(3), views=0)


def test_thread_split_gives_the_same_scores(matched_path):
    """With several torch threads the gallery blocks are shared out between Python threads
    (each single-threaded): the very same scores as one thread, inside inference mode too."""
    from occtool.matching.visibility_matched import VisibilityMatchedScorer

    g = torch.Generator().manual_seed(3)
    cp, cg = torch.randn(9, 2 * 49, 16, generator=g), torch.randn(70, 2 * 49, 16, generator=g)
    vp, vg = torch.rand(9, 2 * 49, generator=g), torch.rand(70, 2 * 49, generator=g)
    vp[0] = 0.0  # no shared visibility: scores 0
    scorer = VisibilityMatchedScorer(bias=torch.randn(16, generator=g), views=2, chunk_bytes=8 * 8 * 16 * 4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = scorer.score(cp, cg, vp, vg)
        torch.set_num_threads(2)
        two = scorer.score(cp, cg, vp, vg)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two) and (one[0] == 0).all()


@pytest.mark.parametrize("path", ["fused", "eager"])
def test_workers_run_single_threaded_whatever_the_process_default(tmp_path, path):
    """A new thread's MKL and OpenMP thread counts are the process defaults (MKL_NUM_THREADS,
    OMP_NUM_THREADS, else the cores), not its caller's: each worker sets one thread itself, or its
    first GEMMs run multi-threaded (oversubscribed, and the scores no longer equal one thread's).
    Run in a process whose default is 2 threads (make test pins it to 1, which would hide it)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "workers.py"
    script.write_text(
        "import torch\n"
        "from occtool.matching import kernels, visibility_matched as vm\n"
        f"if {path == 'eager'}:\n"
        "    kernels.load = lambda: None\n"
        "g = torch.Generator().manual_seed(3)\n"
        "cp, cg = torch.randn(9, 98, 16, generator=g), torch.randn(70, 98, 16, generator=g)\n"
        "vp, vg = torch.rand(9, 98, generator=g), torch.rand(70, 98, generator=g)\n"
        "scorer = vm.VisibilityMatchedScorer(bias=torch.randn(16, generator=g), views=2, chunk_bytes=8 * 8 * 16 * 4)\n"
        "torch.set_num_threads(1)\n"
        "one = scorer.score(cp, cg, vp, vg)\n"
        "torch.set_num_threads(2)\n"
        "print(torch.equal(one, scorer.score(cp, cg, vp, vg)))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    res = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True"


def test_strip_helpers_equal_the_rescaled_weights_up_to_one_factor_per_pair():
    """_strip_scales + _write_weights give matched_weights divided by s_0 per pair (view 0
    unscaled, the bias weighted 1 / s_0), and _bias_terms the <x, B> of those weights."""
    from occtool.matching.visibility_matched import _bias_terms, _strip_scales, _write_weights

    g = torch.Generator().manual_seed(5)
    views, locs, dim = 2, 6, 5
    vp, vg = torch.rand(3, views * locs, generator=g), torch.rand(4, views * locs, generator=g)
    vp[0, :locs] = 0.0  # no shared visibility in view 0: no evidence
    cp, cg = torch.randn(3, views * locs, dim, generator=g), torch.randn(4, views * locs, dim, generator=g)
    bias = torch.randn(dim, generator=g)
    vp_t = vp.unflatten(1, (views, locs)).transpose(0, 1).contiguous()  # [V, p, L]
    vg_t = vg.unflatten(1, (views, locs)).permute(1, 2, 0).contiguous()  # [V, L, g]
    ok, inv_s0, ratio = _strip_scales(vp_t, vg_t, vp_t.sum(-1), vg_t.sum(1))
    w = torch.empty(3, 4, views * locs)
    _write_weights(w, vp, vg, ratio, locs=locs)
    want, want_ok = matched_weights(vp[:, None], vg[None], views)
    assert torch.equal(ok, want_ok) and not ok[0].any() and ok[1:].all()
    torch.testing.assert_close((w / inv_s0[..., None])[1:], want[1:], rtol=1e-5, atol=1e-6)
    beta_p_t = vp_t * (cp @ bias).T.unflatten(0, (views, locs)).transpose(1, 2)
    beta_g_t = vg_t * (cg @ bias).T.unflatten(0, (views, locs))
    a_p, a_g = _bias_terms(vp_t, vg_t, beta_p_t, beta_g_t, ratio)
    torch.testing.assert_close(a_p[1:], torch.einsum("pgl,pld,d->pg", w, cp, bias)[1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a_g[1:], torch.einsum("pgl,gld,d->pg", w, cg, bias)[1:], rtol=1e-5, atol=1e-5)


def test_probe_chunks_and_block_shapes_change_nothing(monkeypatch, matched_path):
    import occtool.matching.visibility_matched as vm

    g = torch.Generator().manual_seed(7)
    cp, cg = torch.randn(11, 2 * 49, 16, generator=g), torch.randn(37, 2 * 49, 16, generator=g)
    vp, vg = torch.rand(11, 2 * 49, generator=g), torch.rand(37, 2 * 49, generator=g)
    scorer = VisibilityMatchedScorer(bias=torch.randn(16, generator=g), views=2)
    want = scorer.score(cp, cg, vp, vg)
    monkeypatch.setattr(vm, "PROBE_CHUNK", 3)
    small = VisibilityMatchedScorer(bias=scorer.bias, views=2, chunk_bytes=4 * 8 * 16 * 4)  # 4 x 8 blocks
    torch.testing.assert_close(small.score(cp, cg, vp, vg), want, rtol=1e-5, atol=1e-6)
    assert scorer.score(cp[:0], cg, vp[:0], vg).shape == (0, 37)


@pytest.mark.parametrize("views", [1, 2, 3])
def test_fused_and_eager_paths_agree(views):
    """The fused kernels against the eager ops, blocks not dividing the sides, pairs without
    overlap in one view (scored 0) and faces with no visibility at all."""
    import occtool.matching.visibility_matched as vm
    from occtool.matching import kernels

    if kernels.load() is None:
        pytest.skip("numba is not installed: no fused kernels")
    g = torch.Generator().manual_seed(11 + views)
    cp, cg = torch.randn(13, views * 9, 24, generator=g), torch.randn(29, views * 9, 24, generator=g)
    vp, vg = torch.rand(13, views * 9, generator=g), torch.rand(29, views * 9, generator=g)
    vp[2] = 0.0
    vg[3, -9:] = 0.0  # nothing visible in the last view
    bias = torch.randn(24, generator=g)
    args = dict(bias=bias, views=views, block_bytes=5 * 10 * 24 * 4)  # 5 x 10 blocks
    fused = vm._matched_scores(cp, cg, vp, vg, fused=True, **args)
    eager = vm._matched_scores(cp, cg, vp, vg, fused=False, **args)
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-6)
    assert (fused[2] == 0).all() and (fused[:, 3] == 0).all() and (fused[fused != 0].abs() > 0).all()
    assert torch.isfinite(fused).all()


def test_fused_path_refused_without_numba(monkeypatch):
    import occtool.matching.visibility_matched as vm
    from occtool.matching import kernels

    monkeypatch.setattr(kernels, "load", lambda: None)
    x, v = torch.randn(2, 2 * 4, 3), torch.rand(2, 2 * 4)
    with pytest.raises(OcctoolError, match="needs numba"):
        vm._matched_scores(x, x, v, v, bias=torch.zeros(3), views=2, block_bytes=1024, fused=True)
