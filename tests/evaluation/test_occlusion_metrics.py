"""Occlusion-map metrics (shared by training validation and visualize-occlusion), by hand."""

import numpy as np
import pytest

from occtool.errors import OcctoolError
from occtool.evaluation.metrics import occlusion_iou, occlusion_mae


def test_occlusion_iou():
    pred = np.ones((3, 7, 7), np.float32)
    gt = np.ones((3, 7, 7), np.float32)
    pred[0, 4:] = 0.2
    gt[0, 4:] = 0.0  # identical regions: IoU 1
    pred[1, 5:] = 0.1
    gt[1, 4:] = 0.3  # 14 of 21 cells: IoU 2/3
    iou, n = occlusion_iou(pred, gt)  # image 2: nothing occluded on either side -> not counted
    assert n == 2 and iou == pytest.approx((1 + 14 / 21) / 2)
    assert np.isnan(occlusion_iou(np.ones((2, 3)), np.ones((2, 3)))[0])


def test_occlusion_mae():
    pred = np.zeros((2, 2, 2))
    gt = np.array([[[1, 0], [0, 0]], [[0.5, 0.5], [0, 0]]])
    assert occlusion_mae(pred, gt) == pytest.approx(2.0 / 8)
    with pytest.raises(OcctoolError):
        occlusion_mae(np.zeros((2, 4)), np.zeros((2, 5)))
