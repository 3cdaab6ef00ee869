"""Similarity transforms (Umeyama least squares) and the 5-point face warp."""

from __future__ import annotations

import numpy as np

from occtool.data.landmarks import template_for_size
from occtool.errors import ShapeError, check_shape


def umeyama(src: np.ndarray, dst: np.ndarray, *, estimate_scale: bool = True) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst.

    src, dst: [N, 2] points, N >= 2. Returns the 2x3 matrix M with dst ~= M @ [x, y, 1]
    (Umeyama 1991: minimises sum ||dst_i - (s R src_i + t)||^2, R a proper rotation).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    check_shape("umeyama src", src.shape, "[N, 2] with N >= 2", src.ndim == 2 and src.shape[1] == 2 and src.shape[0] >= 2)
    check_shape("umeyama dst", dst.shape, f"[{src.shape[0]}, 2]", dst.shape == src.shape)
    n = src.shape[0]
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - mu_s, dst - mu_d
    cov = dc.T @ sc / n  # [2, 2]
    u, sing, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        raise ShapeError("umeyama: degenerate points (all source or all destination points coincide)")
    d = np.ones(2)
    if rank == 1:
        # Collinear points: any rotation about the line fits; take the reflection-free one.
        if np.linalg.det(u) * np.linalg.det(vt) < 0:
            d[-1] = -1.0
    elif np.linalg.det(cov) < 0:
        d[-1] = -1.0
    r = u @ np.diag(d) @ vt
    var_s = (sc**2).sum() / n
    scale = float((sing * d).sum() / var_s) if estimate_scale else 1.0
    t = mu_d - scale * r @ mu_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = t
    return m


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points [N, 2] -> [N, 2] float32."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (pts @ np.asarray(matrix, dtype=np.float64)[:, :2].T + np.asarray(matrix)[:, 2]).astype(np.float32)


def similarity_params(matrix: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(scale, rotation in degrees, translation [2]) of a 2x3 similarity matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    angle = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
    return scale, angle, m[:, 2].copy()


def alignment_matrix(landmarks: np.ndarray, size_hw: tuple[int, int] = (112, 112)) -> np.ndarray:
    """2x3 similarity mapping 5 image landmarks [5, 2] onto the ArcFace template for size_hw."""
    lm = np.asarray(landmarks, dtype=np.float64)
    check_shape("landmarks", lm.shape, "[5, 2]", lm.shape == (5, 2))
    return umeyama(lm, template_for_size(size_hw))


def warp_face(image: np.ndarray, matrix: np.ndarray, size_hw: tuple[int, int] = (112, 112)) -> np.ndarray:
    """Warp an image [H, W, C] by a 2x3 matrix into a size_hw crop (bilinear, black border)."""
    import cv2

    h, w = size_hw
    return cv2.warpAffine(
        np.ascontiguousarray(image), np.asarray(matrix, dtype=np.float64), (int(w), int(h)),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size_hw: tuple[int, int] = (112, 112)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align one face: returns (crop [h, w, C], landmarks in the crop [5, 2], matrix 2x3)."""
    matrix = alignment_matrix(landmarks, size_hw)
    return warp_face(image, matrix, size_hw), transform_points(matrix, landmarks), matrix
