"""Validation metrics: visibility-matched embedding scores, occlusion IoU, identification."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from occtool.models import build_backbone
from occtool.training.validation import (
    _contributions,
    _is_affine,
    identification_metrics,
    matched_scores,
    occlusion_iou,
)


def test_matched_scores_equal_brute_force():
    torch.manual_seed(0)
    bb = build_backbone("mobilefacenet").eval()
    with torch.no_grad():
        probe = [torch.rand(3, 512, 7, 7) for _ in range(2)]  # view 0 and its mirror
        gal = [torch.rand(4, 512, 7, 7) for _ in range(2)]
        vp = [torch.rand(3, 49) for _ in range(2)]
        vg = [torch.rand(4, 49) for _ in range(2)]
        cp = [_contributions(bb, m, device="cpu") for m in probe]
        cg = [_contributions(bb, m, device="cpu") for m in gal]
        b = cp[0][1]
        assert _is_affine(bb, gal[0], cg[0][0], b, device="cpu")
        got = matched_scores(tuple(c for c, _ in cp), tuple(vp), tuple(c for c, _ in cg), tuple(vg), b, chunk=2)
        want = np.zeros((3, 4), np.float32)
        for i in range(3):
            for j in range(4):
                rp = rg = 0
                for k in range(2):
                    w = (vp[k][i] * vg[k][j]).view(1, 1, 7, 7)
                    rp = rp + bb.embed_raw(probe[k][i: i + 1] * w)
                    rg = rg + bb.embed_raw(gal[k][j: j + 1] * w)
                want[i, j] = float(F.cosine_similarity(rp, rg))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_non_affine_output_layer_is_detected():
    class Squash(torch.nn.Module):
        def embed_raw(self, fm):
            return torch.tanh(fm.flatten(1)[:, :8] * 3)

    maps = torch.rand(2, 4, 3, 3)
    c, b = _contributions(Squash(), maps, device="cpu")
    assert not _is_affine(Squash(), maps, c, b, device="cpu")


def test_occlusion_iou():
    pred = np.ones((3, 7, 7), np.float32)
    gt = np.ones((3, 7, 7), np.float32)
    pred[0, 4:] = 0.2
    gt[0, 4:] = 0.0  # identical regions: IoU 1
    pred[1, 5:] = 0.1
    gt[1, 4:] = 0.3  # 14 of 21 cells: IoU 2/3
    iou, n = occlusion_iou(pred, gt)  # image 2: nothing occluded on either side -> not counted
    assert n == 2 and iou == pytest.approx((1 + 14 / 21) / 2)


def test_identification_metrics():
    scores = np.array([[0.9, 0.1, 0.2], [0.3, 0.2, 0.8], [0.5, 0.6, 0.1]])
    m = identification_metrics(scores, np.array([0, 2, 0]))
    assert m["rank1"] == pytest.approx(2 / 3) and m["rank5"] == 1.0
    assert 0.0 <= m["tar@far=1e-3"] <= 1.0
