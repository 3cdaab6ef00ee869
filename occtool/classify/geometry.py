"""The classifier's input: face box -> grown crop -> 224x224 -> (x/255 - 0.5) / 0.5 (DESIGN piece 7).

One rule for every input: the face box grown by `margin` (30%) of its width/height on each side,
clipped to the frame, resized to 224x224. For an aligned 112x112 crop the face box is the one
RetinaFace finds on the ArcFace template (`TEMPLATE_FACE_BOX_112`, the median over 200 aligned
LFW faces); grown by 30% it covers more than the whole crop, so after clipping the classifier
sees the whole aligned image. Training (augment's aligned crops) and `predict --whole-image`
therefore make exactly the same crop; on raw frames the grown detector box adds context
around the face (and is not square), which is the remaining train/predict difference.
"""

from __future__ import annotations

import numpy as np

from occtool.errors import ShapeError, check_shape

INPUT_SIZE = 224
MARGIN = 0.3
# Median RetinaFace box (x1, y1, x2, y2) on aligned 112x112 LFW crops (200 faces, 2026-11-30).
TEMPLATE_FACE_BOX_112 = (17.8, 10.6, 95.5, 114.7)


def template_face_box(image_hw: tuple[int, int]) -> np.ndarray:
    """The face box of an aligned crop of size image_hw (the 112x112 template box, scaled)."""
    h, w = image_hw
    sx, sy = w / 112.0, h / 112.0
    x1, y1, x2, y2 = TEMPLATE_FACE_BOX_112
    return np.array([x1 * sx, y1 * sy, x2 * sx, y2 * sy], dtype=np.float64)


def grown_box(box, image_hw: tuple[int, int], margin: float = MARGIN) -> tuple[int, int, int, int]:
    """box (x1, y1, x2, y2) grown by margin * width / height on each side, clipped to the frame.

    Returns integer pixel bounds (x1, y1, x2, y2) with x2/y2 exclusive, at least 1 pixel wide.
    ShapeError for a box that is not 4 finite numbers with x2 > x1, y2 > y1, or that lies
    entirely outside the frame.
    """
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    ok = b.shape == (4,) and bool(np.isfinite(b).all()) and b[2] > b[0] and b[3] > b[1]
    check_shape("box", b.shape, "(x1, y1, x2, y2) finite with x2 > x1 and y2 > y1", ok)
    h, w = int(image_hw[0]), int(image_hw[1])
    bw, bh = b[2] - b[0], b[3] - b[1]
    x1 = max(0, int(np.floor(b[0] - margin * bw)))
    y1 = max(0, int(np.floor(b[1] - margin * bh)))
    x2 = min(w, int(np.ceil(b[2] + margin * bw)))
    y2 = min(h, int(np.ceil(b[3] + margin * bh)))
    if x2 <= x1 or y2 <= y1:
        raise ShapeError(f"box {tuple(round(float(v), 1) for v in b)} lies outside the {w}x{h} frame")
    return x1, y1, x2, y2


def crop_face(image: np.ndarray, box, *, margin: float = MARGIN, size: int = INPUT_SIZE) -> np.ndarray:
    """uint8 RGB [H, W, 3] + face box -> uint8 RGB [size, size, 3] (the grown, clipped crop)."""
    import cv2

    check_shape("image", getattr(image, "shape", ()), "uint8 RGB [H, W, 3]",
                isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8)
    x1, y1, x2, y2 = grown_box(box, image.shape[:2], margin)
    crop = image[y1:y2, x1:x2]
    shrink = crop.shape[0] * crop.shape[1] > size * size
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def to_input(crops: np.ndarray) -> np.ndarray:
    """uint8 RGB crops [B, S, S, 3] -> float32 [B, 3, S, S], (x/255 - 0.5) / 0.5 (in [-1, 1])."""
    crops = np.asarray(crops)
    check_shape("crops", crops.shape, "uint8 [B, S, S, 3]", crops.ndim == 4 and crops.shape[-1] == 3 and crops.dtype == np.uint8)
    x = crops.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return np.ascontiguousarray((x - 0.5) / 0.5)
