"""Scoring internals on hand-made scores: templates, best image per identity, identification
bookkeeping (ranks, genuine/impostor counts, sampling that never takes the true column)."""

import numpy as np
import torch

from occtool.evaluation.scoring import (
    FusedScorer,
    StoredScorer,
    cosine_pair_scores,
    identify,
    identity_templates,
    max_per_identity,
    qaconv_pair_scores,
    znorm_global,
)


def test_identity_templates_are_renormalised_means():
    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]), dim=1)
    t = identity_templates(e, [0, 0, 1], 2)
    assert torch.allclose(t[0], torch.tensor([2**-0.5, 2**-0.5]))
    assert torch.allclose(t[1], torch.tensor([0.6, 0.8]))


def test_max_per_identity():
    s = torch.tensor([[0.1, 0.5, 0.3], [0.9, 0.2, 0.4]])
    out = max_per_identity(s, torch.tensor([0, 0, 1]), 3)
    assert torch.equal(out[:, :2], torch.tensor([[0.5, 0.3], [0.9, 0.4]]))
    assert torch.isinf(out[:, 2]).all()  # an identity with no image


def test_identify_ranks_counts_and_unknown_probes():
    s = torch.tensor([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.3, 0.2, 0.8], [0.4, 0.3, 0.2]])
    true = np.array([0, 1, 1, -1])  # last probe's identity is not in the gallery
    r = identify(StoredScorer(s), true, 3, chunk=2)
    assert r.ranks.tolist() == [1, 2, 3]  # tie at 0.5 ranks the true identity second
    np.testing.assert_allclose(r.genuine, [0.9, 0.5, 0.2])
    assert r.impostor.size == 3 * 2 + 3 and not r.impostors_sampled
    assert r.rank_all[3] == 0 and np.isnan(r.genuine_all[3])
    assert r.top_ids[2, 0] == 2


def test_identify_impostor_sampling_skips_true_column():
    P, n = 50, 40
    s = torch.rand(P, n) * 0.5
    true = np.arange(P) % n
    s[np.arange(P), true] = 9.0  # the true column is recognisable
    r = identify(StoredScorer(s), true, n, max_impostors=P * 10)
    assert r.impostors_sampled and r.impostor.size == P * 10
    assert r.impostor.max() < 1.0 and r.impostors_total == P * (n - 1)
    assert r.ranks.tolist() == [1] * P


def test_fused_is_row_znormalised_sum():
    a = torch.tensor([[1.0, 2.0, 3.0]])
    b = torch.tensor([[30.0, 10.0, 20.0]])
    f = FusedScorer([StoredScorer(a), StoredScorer(b)]).identity_scores(slice(0, 1))
    assert torch.allclose(f, torch.tensor([[0.0, -1.0, 1.0]]))


def test_pair_helpers():
    a = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=1)
    b = torch.nn.functional.normalize(torch.tensor([[0.0, 1.0], [1.0, 1.0]]), dim=1)
    np.testing.assert_allclose(cosine_pair_scores(a, b), [0.0, 1.0], atol=1e-6)
    z = znorm_global(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(z, [-1.2247449, 0.0, 1.2247449], atol=1e-6)


def test_qaconv_pair_scores_equal_each_pair_alone():
    from occtool.matching import QAConvMatcher

    torch.manual_seed(0)
    m = QAConvMatcher(num_features=8, height=3, width=3).eval()
    maps = torch.randn(6, 8, 3, 3)
    vis = torch.rand(6, 1, 3, 3)
    ia, ib = np.array([0, 1, 2, 3, 4]), np.array([5, 4, 3, 2, 0])
    got = qaconv_pair_scores(m, maps.numpy(), ia, ib, vis, device="cpu", chunk=2)
    want = [m.score(maps[[a]], maps[[b]], probe_vis=vis[[a]], gallery_vis=vis[[b]])[0, 0].item() for a, b in zip(ia, ib)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
