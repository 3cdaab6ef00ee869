import numpy as np
import pytest
import torch

from occtool.matching.visibility_matched import VisibilityMatchedScorer
from occtool.visualize.correspondence import matched_contributions, qaconv_correspondences


def _brute_force(fp, fg, vp, vg, k):
    """Loops over every (r, s): normalise each location, weight, keep each r's best s, top-k r."""
    c, h, w = fp.shape
    best = []
    for r in range(h * w):
        a = fp[:, r // w, r % w] / np.linalg.norm(fp[:, r // w, r % w])
        cand = []
        for s in range(h * w):
            b = fg[:, s // w, s % w] / np.linalg.norm(fg[:, s // w, s % w])
            cand.append(float(a @ b) * vp.flat[r] * vg.flat[s])
        best.append((max(cand), r, int(np.argmax(cand))))
    best.sort(key=lambda t: (-t[0], t[1]))
    return best[:k]


@pytest.mark.parametrize("weighted", [True, False])
def test_top_k_equals_brute_force_argmax(weighted):
    rng = np.random.default_rng(1)
    fp, fg = rng.normal(size=(2, 8, 7, 7))
    vp, vg = rng.random((2, 7, 7))
    if not weighted:
        vp, vg = np.ones((7, 7)), np.ones((7, 7))
    got = qaconv_correspondences(torch.tensor(fp), torch.tensor(fg),
                                 torch.tensor(vp) if weighted else None, torch.tensor(vg) if weighted else None, k=6)
    ref = _brute_force(fp, fg, vp, vg, 6)
    assert got.probe_loc.tolist() == [r for _, r, _ in ref]
    assert got.gallery_loc.tolist() == [s for _, _, s in ref]
    np.testing.assert_allclose(got.scores, [v for v, _, _ in ref], rtol=1e-5, atol=1e-6)


def test_weighting_moves_matches_off_occluded_cells():
    rng = np.random.default_rng(2)
    fp = rng.normal(size=(8, 7, 7))
    vp = np.ones((7, 7))
    vp[4:] = 0.0  # the probe's lower face is hidden
    got = qaconv_correspondences(torch.tensor(fp), torch.tensor(fp), torch.tensor(vp), torch.ones(7, 7), k=10)
    assert (got.probe_loc < 28).all()  # every top match starts in the visible rows 0-3
    plain = qaconv_correspondences(torch.tensor(fp), torch.tensor(fp), k=49)
    assert (plain.gallery_loc == np.arange(49)[plain.probe_loc]).all()  # a face matches itself in place


def _matched_inputs(views, seed=0):
    g = torch.Generator().manual_seed(seed)
    L, D = 49, 16
    cp, cg = torch.randn(views * L, D, generator=g), torch.randn(views * L, D, generator=g)
    vp, vg = torch.rand(views * L, generator=g), torch.rand(views * L, generator=g)
    vp[: 4 * 7] = 1.0
    vp[4 * 7 : L] = 0.0  # lower rows of view 0 hidden
    return cp, cg, vp, vg, torch.randn(D, generator=g)


@pytest.mark.parametrize("views", [1, 2])
def test_matched_shares_sum_to_the_score(views):
    cp, cg, vp, vg, bias = _matched_inputs(views)
    m = matched_contributions(cp, cg, vp, vg, bias=bias, views=views, size_hw=(7, 7))
    ref = VisibilityMatchedScorer(bias=bias, views=views).pair_scores(cp[None], cg[None], vp[None], vg[None])[0]
    assert m.score == pytest.approx(float(ref), abs=1e-6)
    assert m.per_view.sum() + m.bias_share == pytest.approx(m.score, abs=1e-5)
    assert m.per_location.sum() == pytest.approx(m.per_view.sum(), abs=1e-5)
    assert np.all(m.per_view[0, 4:] == 0.0)  # hidden cells carry nothing
    if views == 2:  # the mirror's columns are folded back onto the face
        np.testing.assert_allclose(m.per_location, m.per_view[0] + m.per_view[1][:, ::-1], atol=1e-7)


def test_matched_no_overlap_scores_zero():
    cp, cg, vp, vg, bias = _matched_inputs(1)
    vg = 1.0 - (vp > 0).float()  # visible exactly where the probe is not
    m = matched_contributions(cp, cg, vp, vg, bias=bias, views=1, size_hw=(7, 7))
    assert not m.overlap and m.score == 0.0 and m.bias_share == 0.0 and not m.per_location.any()
