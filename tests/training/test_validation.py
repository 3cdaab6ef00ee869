"""Validation metrics: occlusion IoU, identification (the visibility-matched scores are tested in
tests/matching/test_visibility_matched.py)."""

from __future__ import annotations

import numpy as np
import pytest

from occtool.evaluation.metrics import occlusion_iou
from occtool.training.validation import identification_metrics


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
