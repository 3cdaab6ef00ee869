"""Detect + align on raw LFW, against the provided MTCNN-aligned crops; face choice; fallback."""

from __future__ import annotations

import numpy as np
import pytest

from occtool.align import FaceAligner, center_crop_face, select_faces
from occtool.align.agreement import compare_crops
from occtool.data.images import read_image_rgb
from occtool.data.landmarks import ARCFACE_TEMPLATE_112
from occtool.detect import Detection
from tests.conftest import shared_or_skip

SAMPLES = (
    "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
    "Abdullah_Gul/Abdullah_Gul_0006.jpg",
    "George_W_Bush/George_W_Bush_0016.jpg",
    "Serena_Williams/Serena_Williams_0003.jpg",
)


@pytest.fixture(scope="module")
def aligner():
    weights = shared_or_skip("weights", "retinaface_mnet025", "mobilenet0.25_Final.pth")
    return FaceAligner(weights=weights)


def test_aligned_crops_match_the_provided_mtcnn_crops(aligner, record_property):
    raw = shared_or_skip("data", "lfw", "images")
    ref = shared_or_skip("data", "lfw_aligned112", "images")
    shifts, mads, residuals = [], [], []
    for rel in SAMPLES:
        faces, dets = aligner.align(read_image_rgb(raw / rel))
        assert len(faces) == 1 and faces[0].score > 0.9, rel
        face = faces[0]
        assert face.image.shape == (112, 112, 3) and face.image.dtype == np.uint8
        # the detected landmarks, mapped into the crop, sit near the template (a similarity cannot
        # fit a turned face exactly: a few pixels of residual are normal)
        residual = float(np.linalg.norm(face.landmarks - ARCFACE_TEMPLATE_112, axis=1).mean())
        assert residual < 8.0, (rel, residual)
        agreement = compare_crops(face.image, read_image_rgb(ref / rel))
        assert agreement.converged, rel
        shifts.append(agreement.landmark_shift_px)
        mads.append(agreement.pixel_mad)
        residuals.append(residual)
    summary = {"landmark_shift_px": float(np.mean(shifts)), "pixel_mad": float(np.mean(mads)), "template_residual_px": float(np.mean(residuals))}
    record_property("agreement_with_lfw_aligned112", summary)
    print("agreement with lfw_aligned112:", summary)
    # Two detectors (RetinaFace vs MTCNN) place the landmarks a little differently: about 1-2 px
    # on a 112 crop in practice; 3.5 px would be a visibly different alignment.
    assert summary["landmark_shift_px"] < 3.5 and max(shifts) < 5.0
    assert summary["pixel_mad"] < 25.0
    assert summary["template_residual_px"] < 5.0


def test_compare_crops_measures_a_known_shift():
    import cv2

    ref = shared_or_skip("data", "lfw_aligned112", "images")
    crop = read_image_rgb(ref / SAMPLES[0])
    assert compare_crops(crop, crop).landmark_shift_px < 0.05
    shifted = cv2.warpAffine(crop, np.float64([[1, 0, 2.0], [0, 1, -1.0]]), (112, 112), borderMode=cv2.BORDER_REFLECT)
    res = compare_crops(shifted, crop)
    assert res.landmark_shift_px == pytest.approx(np.hypot(2.0, 1.0), abs=0.25)


def _det(cx, cy, score, half=20.0):
    box = np.array([cx - half, cy - half, cx + half, cy + half], np.float32)
    return Detection(box=box, score=score, landmarks=np.zeros((5, 2), np.float32))


def test_select_faces_policies():
    dets = [_det(30, 30, 0.99), _det(105, 95, 0.8), _det(190, 100, 0.7)]
    assert select_faces(dets, (200, 200), "center") == [dets[1]]
    assert select_faces(dets, (200, 200), "all") == dets
    assert select_faces([], (200, 200), "center") == []


def test_all_faces_of_a_two_face_image(aligner):
    raw = shared_or_skip("data", "lfw", "images")
    two = np.concatenate([read_image_rgb(raw / SAMPLES[0]), read_image_rgb(raw / SAMPLES[2])], axis=1)  # 250x500
    aligner_all = FaceAligner(aligner.detector, select="all")
    faces, dets = aligner_all.align(two)
    assert len(faces) >= 2 and all(f.score > 0.9 for f in faces[:2])
    central, _ = aligner.align(two)
    assert len(central) == 1


def test_center_crop_fallback():
    image = np.full((250, 250, 3), 128, np.uint8)
    face = center_crop_face(image)
    assert face.image.shape == (112, 112, 3) and face.score == 0.0 and face.is_fallback
    np.testing.assert_allclose(face.landmarks, ARCFACE_TEMPLATE_112)
    # the crop is centred: the image centre maps to the crop centre
    np.testing.assert_allclose(face.matrix[:, :2] @ [125, 125] + face.matrix[:, 2], [56, 56], atol=1e-6)
