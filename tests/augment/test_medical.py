"""Medical masks from the MaskTheFace templates: placement on the canonical template, turned faces."""

from __future__ import annotations

import numpy as np
import pytest

from occtool.augment import MASK_TYPES, MedicalMask
from occtool.augment.occluders.medical_mask import face_anchor_points, load_mask_config, template_variant
from occtool.augment.base import FaceFrame
from occtool.data.landmarks import template_for_size
from occtool.errors import DataError
from tests.augment.conftest import synthetic_face


@pytest.fixture
def templates(masktheface_dir):
    return masktheface_dir


def _points(lm):
    return {name: (int(round(y)), int(round(x))) for name, (x, y) in zip(("le", "re", "nose", "ml", "mr"), lm)}


@pytest.mark.parametrize("mask_type", MASK_TYPES)
def test_mask_covers_nose_and_mouth_not_eyes(templates, mask_type, face):
    lm = template_for_size((112, 112))
    occ = MedicalMask(types=[mask_type], templates_dir=templates)
    pts = _points(lm)
    for seed in range(3):
        res = occ(face, rng=np.random.default_rng(seed))
        vis = res.visibility
        assert res.detail.startswith(mask_type) and "_left" not in res.detail and "_right" not in res.detail
        for key in ("nose", "ml", "mr"):
            y, x = pts[key]
            assert vis[y, x] == 0.0, f"{mask_type}: {key} not covered"
        for key in ("le", "re"):
            y, x = pts[key]
            assert (vis[y - 4 : y + 5, x - 6 : x + 7] == 1.0).all(), f"{mask_type}: {key} covered"
        # it is a lower-face mask: the upper third is untouched
        assert (vis[:45] == 1.0).all()
        assert 0.15 < res.occluded_fraction < 0.6


def test_turned_faces_use_left_right_templates(templates, face):
    available = load_mask_config(str(templates))
    for t in MASK_TYPES:
        assert {t, f"{t}_left", f"{t}_right"} <= set(available), t
    lm = template_for_size((112, 112)).astype(np.float64)
    occ = MedicalMask(types=["surgical"], templates_dir=templates)
    for shift, suffix in ((-9.0, "_left"), (9.0, "_right"), (2.0, "")):
        turned = lm.copy()
        turned[2, 0] += shift  # nose off the eye midpoint by ~0.25 inter-ocular distances
        res = occ(face, landmarks=turned, rng=np.random.default_rng(0))
        assert res.detail == "surgical" + suffix
        y, x = int(round(turned[2, 1])), int(round(turned[2, 0]))
        assert res.visibility[y, x] == 0.0
        for key in (3, 4):
            assert res.visibility[int(round(turned[key, 1])), int(round(turned[key, 0]))] == 0.0


def test_turned_face_moves_near_contour_in(templates):
    lm = template_for_size((112, 112)).astype(np.float64)
    frontal, _ = face_anchor_points(FaceFrame(lm))
    turned_lm = lm.copy()
    turned_lm[2, 0] -= 9.0
    turned, t = face_anchor_points(FaceFrame(turned_lm))
    assert t < 0
    # nose to the left: the left contour (a, d) comes towards the nose, the right one moves out
    assert turned[0, 0] > frontal[0, 0] and turned[2, 0] > frontal[2, 0]
    assert template_variant("N95", -0.3, 0.12, {"N95_left": 1}) == "N95_left"
    assert template_variant("N95", -0.3, 0.12, {}) == "N95"


def test_mask_follows_scale_and_roll(templates):
    img = synthetic_face(224, seed=3)
    lm = template_for_size((224, 224)).astype(np.float64)
    ang = np.radians(15)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    lm = (lm - 112) @ rot.T + 112
    res = MedicalMask(types=["surgical_blue"], templates_dir=templates)(img, landmarks=lm, rng=np.random.default_rng(1))
    for key in (2, 3, 4):
        assert res.visibility[int(round(lm[key, 1])), int(round(lm[key, 0]))] == 0.0
    for key in (0, 1):
        y, x = int(round(lm[key, 1])), int(round(lm[key, 0]))
        assert (res.visibility[y - 6 : y + 7, x - 8 : x + 9] == 1.0).all()


def test_unknown_type_and_missing_templates(templates, tmp_path):
    with pytest.raises(DataError, match="not in"):
        MedicalMask(types=["snorkel"], templates_dir=templates)
    with pytest.raises(DataError, match="masks.cfg"):
        MedicalMask(templates_dir=tmp_path)
