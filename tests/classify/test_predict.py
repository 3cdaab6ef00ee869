import numpy as np
import pytest

from occtool.classify.config import PredictConfig
from occtool.classify.predict import (
    BoxesFile, FixedBox, Predictor, WholeImage, count_frames, expand_inputs, iter_frames, parse_bbox, predict_frames,
)
from occtool.errors import ConfigError, DataError

from .conftest import write_image, write_video


class _ByBrightness(Predictor):
    """A fake classifier: class from the crop's mean brightness (dark none, mid opaque, bright transparent)."""

    kind = "fake"

    def probabilities(self, x):
        level = x.mean(axis=(1, 2, 3))  # in [-1, 1]
        k = np.digitize(level, [-0.45, 0.18])
        p = np.full((len(x), 3), 0.1, np.float32)
        p[np.arange(len(x)), k] = 0.8
        return p


def test_video_frames_every_n_with_weights(tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=7)
    frames = list(iter_frames([video], every=3))
    assert [f.index for f in frames] == [0, 3, 6]
    assert [f.weight for f in frames] == [3, 3, 1]
    assert frames[0].image.shape == (96, 128, 3)
    levels = [int(round(f.image.mean())) for f in frames]
    assert levels == pytest.approx([10, 70, 130], abs=4)  # frame k has grey level 10 + 20 k
    assert count_frames([video], 3) == 3


def test_predict_routes_a_video(tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=12)  # grey 10..230
    cfg = PredictConfig(batch_size=4)
    result = predict_frames(iter_frames([video], every=2), _ByBrightness(), FixedBox(np.array([40, 30, 90, 70])), cfg)
    assert len(result.faces) == 6 and result.report["frames"]["total"] == 12
    classes = [f["class"] for f in result.faces]  # levels 10, 50, 90, 130, 170, 210
    assert classes == ["none", "none", "opaque", "opaque", "transparent", "transparent"]
    assert [f["route"] for f in result.faces] == ["fast", "fast", "mask_aware", "mask_aware", "slow", "slow"]
    assert result.faces[0]["crop_x1"] == 25 and result.faces[0]["crop_y2"] == 82  # 30% of 50 x 40
    est = result.report["estimate"]
    assert est["routed_s"] == pytest.approx(4 * 0.5 + 4 * 0.6 + 4 * 3.0)
    assert est["always_slow_s"] == pytest.approx(36.0)


def test_low_confidence_takes_the_fallback(tmp_path):
    img = write_image(tmp_path / "a.png", value=20)
    cfg = PredictConfig(min_confidence=0.9, fallback_route="slow")
    result = predict_frames(iter_frames([img]), _ByBrightness(), WholeImage(), cfg)
    assert result.faces[0]["class"] == "none" and result.faces[0]["route"] == "slow" and result.faces[0]["fallback"]
    assert result.frames[0]["route"] == "slow"


def test_boxes_file_by_name_and_frame(tmp_path):
    img = write_image(tmp_path / "imgs" / "a.png", size_hw=(60, 80))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("source,frame,x1,y1,x2,y2\na.png,0,10,10,30,30\na.png,0,40,20,60,50\n")
    src = BoxesFile(boxes)
    frames = list(iter_frames(expand_inputs([tmp_path / "imgs"])))
    assert len(src.boxes(frames[0])) == 2
    result = predict_frames(iter(frames), _ByBrightness(), src, PredictConfig())
    assert [f["face"] for f in result.faces] == [0, 1] and result.frames[0]["faces"] == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("source,frame,x1,y1,x2,y2\na.png,0,30,10,10,30\n")
    with pytest.raises(DataError, match="line 2"):
        BoxesFile(bad)


def test_bad_inputs():
    with pytest.raises(ConfigError):
        parse_bbox("1,2,3")
    with pytest.raises(ConfigError):
        parse_bbox("10,10,5,20")
    assert parse_bbox("1, 2, 30, 40").tolist() == [1, 2, 30, 40]
    with pytest.raises(DataError, match="not found"):
        expand_inputs(["/no/such/file.png"])
