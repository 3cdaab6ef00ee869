"""Detect + choose + align: raw photo in, aligned 5-point crops out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from occtool.align.transform import align_face, warp_face
from occtool.data.landmarks import template_for_size
from occtool.errors import ShapeError

Select = Literal["center", "all"]


@dataclass
class AlignedFace:
    """image: aligned crop uint8 [h, w, 3]; landmarks [5, 2] in the crop; score (0 for a
    fallback crop); matrix: the 2x3 map from source pixels to the crop; box [4] in the source
    (None for a fallback crop)."""

    image: np.ndarray
    landmarks: np.ndarray
    score: float
    matrix: np.ndarray
    box: Optional[np.ndarray] = None

    @property
    def is_fallback(self) -> bool:
        return self.box is None


def select_faces(detections: list, image_hw: tuple[int, int], policy: Select = "center") -> list:
    """'center': the one detection whose box centre is closest to the image centre (empty list if
    none); 'all': every detection, in the given (score) order."""
    if policy == "all" or not detections:
        return list(detections)
    if policy != "center":
        raise ValueError(f"select policy: expected center or all, got {policy!r}")
    h, w = image_hw
    centre = np.array([w / 2.0, h / 2.0], dtype=np.float32)
    best = min(range(len(detections)), key=lambda i: (float(np.linalg.norm(detections[i].center - centre)), i))
    return [detections[best]]


def center_crop_matrix(image_hw: tuple[int, int], size_hw: tuple[int, int] = (112, 112), fraction: float = 0.52) -> np.ndarray:
    """2x3 matrix taking a centred crop (side = fraction * the shorter image side, the aspect of
    size_hw) to size_hw. fraction 0.52 matches the average RetinaFace alignment on raw LFW."""
    h, w = image_hw
    oh, ow = size_hw
    side = fraction * min(h, w)
    scale = max(oh, ow) / side
    m = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    m[0, 2] = ow / 2.0 - scale * w / 2.0
    m[1, 2] = oh / 2.0 - scale * h / 2.0
    return m


def center_crop_face(image: np.ndarray, size_hw: tuple[int, int] = (112, 112), fraction: float = 0.52) -> AlignedFace:
    """The fallback when no face is found: a centred crop, landmarks = the template, score 0."""
    m = center_crop_matrix(image.shape[:2], size_hw, fraction)
    return AlignedFace(image=warp_face(image, m, size_hw), landmarks=template_for_size(size_hw).copy(), score=0.0, matrix=m)


class FaceAligner:
    """`align(image_rgb) -> (faces: list[AlignedFace], detections)`.

    detector: anything with `detect(image_rgb) -> list[Detection]` (default: RetinaFaceDetector
    built from detector_kwargs). select: 'center' or 'all'. size_hw: output crop size.
    """

    def __init__(self, detector=None, *, size_hw: tuple[int, int] = (112, 112), select: Select = "center", **detector_kwargs) -> None:
        if detector is None:
            from occtool.detect import RetinaFaceDetector

            detector = RetinaFaceDetector(**detector_kwargs)
        self.detector = detector
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))
        self.select = select

    def align(self, image_rgb: np.ndarray, *, prepared=None):
        """(aligned faces, detections) of an image; `prepared`: the detector's `prepare(image_rgb)`,
        made ahead (align's decoding thread does it)."""
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ShapeError(f"align: expected uint8 RGB [H, W, 3], got {image.dtype} {tuple(image.shape)}")
        detections = self.detector.detect(image) if prepared is None else self.detector.detect(image, prepared=prepared)
        faces = []
        for det in select_faces(detections, image.shape[:2], self.select):
            crop, pts, m = align_face(image, det.landmarks, self.size_hw)
            faces.append(AlignedFace(image=crop, landmarks=pts, score=det.score, matrix=m, box=det.box))
        return faces, detections
