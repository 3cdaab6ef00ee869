"""RetinaFace MobileNet-0.25: strict load of the shared weights, priors, detection on raw LFW."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from occtool.data.images import read_image_rgb
from occtool.detect import RetinaFaceDetector, RetinaFaceNet, load_retinaface, make_priors
from occtool.errors import CheckpointError, ShapeError
from tests.conftest import shared_or_skip

LFW_SAMPLES = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0001.jpg", "Adrien_Brody/Adrien_Brody_0002.jpg")


@pytest.fixture(scope="module")
def weights():
    return shared_or_skip("weights", "retinaface_mnet025", "mobilenet0.25_Final.pth")


@pytest.fixture(scope="module")
def detector(weights):
    return RetinaFaceDetector(weights=weights)


@pytest.fixture(scope="module")
def lfw_raw():
    return shared_or_skip("data", "lfw", "images")


def test_strict_load_matches_every_key(weights):
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net = load_retinaface(weights)
    assert set(net.state_dict()) == set(state)
    assert len(state) == 300
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_bad_weights_are_clear_errors(tmp_path, weights):
    with pytest.raises(CheckpointError, match="not found"):
        load_retinaface(tmp_path / "missing.pth")
    partial = {k: v for k, v in torch.load(weights, map_location="cpu", weights_only=True).items() if not k.startswith("ssh3")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="do not match"):
        load_retinaface(tmp_path / "partial.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="do not load"):
        load_retinaface(tmp_path / "junk.pth")


@pytest.mark.parametrize("hw", [(250, 250), (190, 333), (64, 64)])
def test_priors_match_the_network_outputs(hw):
    h, w = hw
    priors = make_priors(h, w)
    expected = sum(math.ceil(h / s) * math.ceil(w / s) * 2 for s in (8, 16, 32))
    assert priors.shape == (expected, 4)
    with torch.inference_mode():
        boxes, logits, lmk = RetinaFaceNet().eval()(torch.zeros(1, 3, h, w))
    assert boxes.shape == (1, expected, 4) and logits.shape == (1, expected, 2) and lmk.shape == (1, expected, 10)
    # first level, row 0, column 0, the two sizes 16 and 32
    np.testing.assert_allclose(priors[0], [4 / w, 4 / h, 16 / w, 16 / h], rtol=1e-6)
    np.testing.assert_allclose(priors[1], [4 / w, 4 / h, 32 / w, 32 / h], rtol=1e-6)
    # second cell of the first level is one step (8 px) to the right
    np.testing.assert_allclose(priors[2, :2], [12 / w, 4 / h], rtol=1e-6)


def test_priors_are_cached_per_size(detector):
    a = detector.priors(120, 100)
    assert detector.priors(120, 100) is a
    assert detector.priors(100, 120) is not a


@pytest.mark.parametrize("rel", LFW_SAMPLES)
def test_finds_the_central_face_on_raw_lfw(detector, lfw_raw, rel):
    image = read_image_rgb(lfw_raw / rel)
    dets = detector.detect(image)
    assert dets, rel
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    centre = np.array([image.shape[1] / 2, image.shape[0] / 2])
    best = min(dets, key=lambda d: np.linalg.norm(d.center - centre))
    assert best.score > 0.9
    assert np.linalg.norm(best.center - centre) < 30
    lm = best.landmarks
    assert lm.shape == (5, 2) and best.box.shape == (4,)
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # left/right as seen in the image
    assert lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min()  # eyes above the nose above the mouth
    x1, y1, x2, y2 = best.box
    assert (lm[:, 0] > x1).all() and (lm[:, 0] < x2).all() and (lm[:, 1] > y1).all() and (lm[:, 1] < y2).all()


def test_flat_grey_image_has_no_face(detector):
    assert detector.detect(np.full((200, 240, 3), 128, np.uint8)) == []


def test_large_image_is_downscaled_and_mapped_back(weights, lfw_raw):
    import cv2

    image = read_image_rgb(lfw_raw / LFW_SAMPLES[0])
    big = cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # 1000x1000
    small_det = RetinaFaceDetector(weights=weights, max_side=None).detect(image)[0]
    big_det = RetinaFaceDetector(weights=weights, max_side=250).detect(big)[0]
    np.testing.assert_allclose(big_det.landmarks / 4, small_det.landmarks, atol=2.0)
    np.testing.assert_allclose(big_det.box / 4, small_det.box, atol=3.0)


def test_prepared_input_gives_the_same_detections(weights, lfw_raw):
    """`prepare` (run ahead in align's reading thread) + `detect(prepared=...)` == `detect`,
    for an image detected as it is and one downscaled to max_side."""
    import cv2

    image = read_image_rgb(lfw_raw / LFW_SAMPLES[0])
    big = cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    det = RetinaFaceDetector(weights=weights, max_side=400)
    for img in (image, big):
        prepared = det.prepare(img)
        assert prepared.x.shape[0] == 1 and max(prepared.hw) <= 400 and prepared.x.shape[2:] == prepared.hw
        a, b = det.detect(img), det.detect(img, prepared=prepared)
        assert len(a) == len(b) >= 1
        for x, y in zip(a, b):
            assert np.array_equal(x.box, y.box) and np.array_equal(x.landmarks, y.landmarks) and x.score == y.score
    assert det.prepare(big).scale == pytest.approx(0.4)


def test_rejects_non_rgb_uint8(detector):
    with pytest.raises(ShapeError, match="uint8 RGB"):
        detector.detect(np.zeros((50, 50), np.uint8))
    with pytest.raises(ShapeError):
        detector.detect(np.zeros((50, 50, 3), np.float32))
