"""Umeyama similarity estimation and the 5-point warp."""

from __future__ import annotations

import numpy as np
import pytest

from occtool.align import align_face, alignment_matrix, similarity_params, transform_points, umeyama
from occtool.data.landmarks import ARCFACE_TEMPLATE_112, template_for_size
from occtool.errors import ShapeError


def _similarity(scale, degrees, tx, ty):
    a = np.radians(degrees)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


@pytest.mark.parametrize("scale,degrees,tx,ty", [(1.0, 0.0, 0.0, 0.0), (0.37, 17.0, -40.0, 12.5), (2.5, -140.0, 300.0, -7.0)])
def test_recovers_a_known_similarity_exactly(scale, degrees, tx, ty):
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 250, size=(5, 2))
    m = _similarity(scale, degrees, tx, ty)
    est = umeyama(src, transform_points(m, src))
    np.testing.assert_allclose(est, m, atol=1e-4)
    s, a, t = similarity_params(est)
    assert s == pytest.approx(scale, rel=1e-5) and a == pytest.approx(degrees, abs=1e-3)
    np.testing.assert_allclose(t, [tx, ty], atol=1e-3)


def test_noisy_points_least_squares_agrees_with_opencv():
    import cv2

    rng = np.random.default_rng(2)
    for _ in range(20):
        src = rng.uniform(60, 190, size=(5, 2))
        m = _similarity(rng.uniform(0.5, 1.5), rng.uniform(-30, 30), rng.uniform(-60, 0), rng.uniform(-60, 0))
        dst = src @ m[:, :2].T + m[:, 2] + rng.normal(0, 1.5, size=(5, 2))
        ours = umeyama(src, dst)
        cv_m, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.LMEDS)
        res_ours = np.square(src @ ours[:, :2].T + ours[:, 2] - dst).sum()
        res_cv = np.square(src @ cv_m[:, :2].T + cv_m[:, 2] - dst).sum()
        assert res_ours <= res_cv * (1 + 1e-9) + 1e-9  # Umeyama is the least-squares optimum
        np.testing.assert_allclose(ours, cv_m, atol=0.05 * np.abs(cv_m).max())
        assert np.linalg.det(ours[:, :2]) > 0  # a rotation, never a reflection


def test_mirrored_points_give_no_reflection():
    src = ARCFACE_TEMPLATE_112.astype(np.float64)
    dst = src.copy()
    dst[:, 0] = 112 - dst[:, 0]
    assert np.linalg.det(umeyama(src, dst)[:, :2]) > 0


def test_degenerate_points_are_a_shape_error():
    with pytest.raises(ShapeError):
        umeyama(np.ones((5, 2)), np.ones((5, 2)))
    with pytest.raises(ShapeError):
        umeyama(np.ones((5, 3)), np.ones((5, 3)))
    with pytest.raises(ShapeError):
        alignment_matrix(np.ones((4, 2)))


def test_align_face_puts_landmarks_on_the_template():
    # a synthetic image whose landmarks are the template scaled by 2, rotated and shifted
    m_true = _similarity(2.0, 10.0, 30.0, 20.0)
    landmarks = transform_points(m_true, ARCFACE_TEMPLATE_112)
    image = np.zeros((300, 300, 3), np.uint8)
    for x, y in landmarks:
        image[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3] = 255
    crop, pts, m = align_face(image, landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    np.testing.assert_allclose(pts, ARCFACE_TEMPLATE_112, atol=1e-3)
    for x, y in ARCFACE_TEMPLATE_112:
        assert crop[int(round(y)), int(round(x))].max() > 100  # the dots land on the template
    # other output sizes scale the template
    crop, pts, _ = align_face(image, landmarks, (224, 224))
    assert crop.shape == (224, 224, 3)
    np.testing.assert_allclose(pts, template_for_size((224, 224)), atol=1e-3)
