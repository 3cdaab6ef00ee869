"""RetinaFace's numpy decoding against the obvious torch / torchvision formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from occtool.detect.decode import BGR_MEAN, decode_boxes, decode_landmarks, face_scores, nms, to_network_input


def test_face_scores_are_the_softmax_face_probability():
    logits = np.random.default_rng(0).normal(scale=8, size=(500, 2)).astype(np.float32)
    logits[0] = (200.0, -200.0)  # exp overflow: probability 0, no warning turned error
    ref = torch.softmax(torch.from_numpy(logits), dim=-1)[:, 1].numpy()
    np.testing.assert_allclose(face_scores(logits), ref, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_nms_keeps_what_torchvision_keeps(seed):
    from torchvision.ops import nms as tv_nms

    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, size=(300, 2))
    wh = rng.uniform(0, 60, size=(300, 2))
    wh[:5] = 0.0  # empty boxes never suppress anything
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.permutation(300).astype(np.float32) / 300  # distinct: one greedy order
    for iou in (0.2, 0.4, 0.7):
        ref = tv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, iou), ref)


def test_decoding_follows_the_anchor_formulas():
    rng = np.random.default_rng(1)
    priors = rng.uniform(0.1, 0.9, size=(50, 4)).astype(np.float32)
    d, lm = rng.normal(size=(50, 4)).astype(np.float32), rng.normal(size=(50, 10)).astype(np.float32)
    cx = priors[:, 0] + d[:, 0] * 0.1 * priors[:, 2]
    cy = priors[:, 1] + d[:, 1] * 0.1 * priors[:, 3]
    w, h = priors[:, 2] * np.exp(d[:, 2] * 0.2), priors[:, 3] * np.exp(d[:, 3] * 0.2)
    np.testing.assert_allclose(decode_boxes(d, priors), np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1),
                               rtol=1e-5, atol=1e-6)
    pts = decode_landmarks(lm, priors)
    assert pts.shape == (50, 5, 2)
    np.testing.assert_allclose(pts[:, 3, 1], priors[:, 1] + lm[:, 7] * 0.1 * priors[:, 3], rtol=1e-5, atol=1e-6)


def test_network_input_is_bgr_minus_the_mean():
    img = np.random.default_rng(2).integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    x = to_network_input(img)
    ref = img[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) - np.array(BGR_MEAN, np.float32)[:, None, None]
    assert x.shape == (1, 3, 7, 9) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x, ref)
