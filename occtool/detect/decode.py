"""RetinaFace's anchors and the decoding of its outputs, in numpy: network input, priors, box and
landmark decoding, face scores and non-maximum suppression (a few hundred candidates per image:
numpy on the CPU costs less than dispatching torch ops, and needs no torch threads)."""

from __future__ import annotations

import math

import numpy as np

BGR_MEAN = (104.0, 117.0, 123.0)
STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)



def make_priors(height: int, width: int) -> np.ndarray:
    """Anchors [N, 4] (cx, cy, w, h) normalised by the image size; order level, row, column, size."""
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) * step / height, (np.arange(fw) + 0.5) * step / width, indexing="ij")
        per_size = []
        for s in sizes:
            per_size.append(
                np.stack([cx, cy, np.full_like(cx, s / width), np.full_like(cy, s / height)], axis=-1)
            )  # [fh, fw, 4]
        out.append(np.stack(per_size, axis=2).reshape(-1, 4))  # [fh*fw*2, 4] row, col, size
    return np.concatenate(out, axis=0).astype(np.float32)


def decode_boxes(deltas: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """deltas [N, 4], priors [N, 4] (cx, cy, w, h) -> corners [N, 4] normalised."""
    centers = priors[:, :2] + deltas[:, :2] * VARIANCES[0] * priors[:, 2:]
    half = priors[:, 2:] * np.exp(deltas[:, 2:] * VARIANCES[1]) / 2
    return np.concatenate([centers - half, centers + half], axis=1)


def decode_landmarks(deltas: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """deltas [N, 10], priors [N, 4] -> points [N, 5, 2] normalised."""
    d = deltas.reshape(-1, 5, 2)
    return priors[:, None, :2] + d * VARIANCES[0] * priors[:, None, 2:]


def face_scores(logits: np.ndarray) -> np.ndarray:
    """logits [N, 2] (background, face) -> face probability [N] = softmax(logits)[:, 1]."""
    with np.errstate(over="ignore"):  # exp overflow -> inf -> probability 0, as softmax gives
        return 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression, the rule of torchvision.ops.nms: boxes [N, 4] (x1, y1, x2,
    y2), scores [N] -> indices kept [K], highest score first; a box is dropped when its IoU with a
    kept one is > iou_threshold. numpy: the candidates above the score threshold are few."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):  # empty boxes: NaN, never "> threshold"
            iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]
    return np.asarray(keep, dtype=np.int64)


def to_network_input(image_rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> float32 [1, 3, H, W]: BGR minus the mean, one pass per channel
    (over contiguous planes from cv2.split: 1.7x faster than reading the interleaved pixels)."""
    import cv2

    x = np.empty((1, 3, *image_rgb.shape[:2]), dtype=np.float32)
    planes = cv2.split(np.ascontiguousarray(image_rgb))
    for c in range(3):
        np.subtract(planes[2 - c], BGR_MEAN[c], out=x[0, c], dtype=np.float32)
    return x
