"""`occtool align` end to end on a tiny raw-LFW tree (symlinks in tmp)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occtool.align import output_name
from occtool.align.tree import plan_output_names
from occtool.cli.app import run
from occtool.data.images import read_image_rgb
from occtool.data.landmarks import ARCFACE_TEMPLATE_112, read_landmarks
from tests.conftest import shared_or_skip

PEOPLE = ("Aaron_Peirsol", "Abdullah_Gul", "George_W_Bush")


@pytest.fixture
def raw_tree(tmp_path: Path) -> Path:
    """3 people x 2 raw LFW images (symlinks) + a flat grey PNG (no face) + an undecodable file."""
    src = shared_or_skip("data", "lfw", "images")
    shared_or_skip("weights", "retinaface_mnet025", "mobilenet0.25_Final.pth")
    root = tmp_path / "raw"
    for person in PEOPLE:
        (root / person).mkdir(parents=True)
        for img in sorted((src / person).iterdir())[:2]:
            (root / person / img.name).symlink_to(img)
    Image.fromarray(np.full((250, 250, 3), 128, np.uint8)).save(root / PEOPLE[0] / "grey.png")
    (root / PEOPLE[1] / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    return root


@pytest.mark.parametrize("runtime", ["auto", "torch"])  # threads in this process / worker processes
def test_align_tree_end_to_end_with_two_workers(raw_tree: Path, tmp_path: Path, runtime: str):
    out = tmp_path / "aligned"
    assert run(["align", str(raw_tree), "--out", str(out), "--workers", "2", "--runtime", runtime]) == 0
    faces = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*"))
    expected = sorted(f"{p}/{f.name}" for p in PEOPLE for f in (raw_tree / p).iterdir() if f.is_symlink())
    assert faces == expected and len(faces) == 6
    for rel in faces:
        img = read_image_rgb(out / rel)
        assert img.shape == (112, 112, 3)
    lm = read_landmarks(out / "landmarks.csv")
    assert sorted(lm) == faces
    for pts in lm.values():
        assert np.linalg.norm(pts - ARCFACE_TEMPLATE_112, axis=1).mean() < 8
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 8 and metrics["readable"] == 7
    assert metrics["faces_found"] == 6 and metrics["no_face"] == 1 and metrics["unreadable"] == 1
    assert metrics["no_face_images"] == [f"{PEOPLE[0]}/grey.png"]
    assert list(metrics["unreadable_images"]) == [f"{PEOPLE[1]}/broken.jpg"]
    assert metrics["images_per_s"] > 0 and metrics["workers"] == 2
    assert (out / "no_face.txt").read_text().startswith(f"{PEOPLE[0]}/grey.png\tskipped")
    assert (out / "unreadable.txt").read_text().startswith(f"{PEOPLE[1]}/broken.jpg\t")
    assert "select: center" in (out / "config.yaml").read_text()


def test_fallback_center_png_and_all(raw_tree: Path, tmp_path: Path):
    out = tmp_path / "fallback"
    args = ["align", str(raw_tree), "--out", str(out), "--workers", "1", "--fallback", "center", "--format", "png", "--all"]
    assert run(args) == 0
    grey = f"{PEOPLE[0]}/grey_0.png"
    assert (out / grey).is_file()
    lm_text = (out / "landmarks.csv").read_text().splitlines()
    grey_row = [r for r in lm_text if r.startswith(grey + ",")]
    assert len(grey_row) == 1 and grey_row[0].endswith(",0.00000")  # flagged with score 0
    assert (out / f"{PEOPLE[0]}/Aaron_Peirsol_0001_0.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fallback_center"] == 1 and metrics["no_face"] == 1 and metrics["unreadable"] == 1
    assert (out / "no_face.txt").read_text().strip().endswith("center-crop fallback")


def test_refuses_non_empty_out_and_out_inside_src(raw_tree: Path, tmp_path: Path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "x.txt").write_text("x")
    assert run(["align", str(raw_tree), "--out", str(out)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert run(["align", str(raw_tree), "--out", str(raw_tree / "inner")]) == 1
    assert "inside" in capsys.readouterr().err
    assert not (raw_tree / "inner").exists()  # nothing created inside SRC
    assert run(["align", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")]) == 1
    assert "not found" in capsys.readouterr().err
    assert run(["align", str(raw_tree), "--out", str(tmp_path / "o3"), "--set", "nonsense=1"]) == 1
    assert "unknown config key" in capsys.readouterr().err
    assert run(["align", str(raw_tree), "--out", str(tmp_path / "o4"), "--weights", str(tmp_path / "no.pth")]) == 1
    assert "weights not found" in capsys.readouterr().err
    assert not (tmp_path / "o4").exists()


def test_detector_that_cannot_be_built_is_one_clear_error(raw_tree: Path, tmp_path: Path, capsys):
    (tmp_path / "junk.pth").write_bytes(b"junk")
    args = ["align", str(raw_tree), "--out", str(tmp_path / "o"), "--weights", str(tmp_path / "junk.pth"), "--workers", "1"]
    assert run(args) == 1
    err = capsys.readouterr().err
    assert "could not be built" in err and "do not load" in err


def test_output_names():
    assert output_name("a_0001.jpg", "jpg") == "a_0001.jpg"
    assert output_name("a.JPEG", "jpg") == "a.JPEG"
    assert output_name("a.png", "jpg") == "a.jpg"
    assert output_name("a.jpg", "png") == "a.png"
    assert output_name("subject01.glasses", "jpg") == "subject01.glasses.jpg"  # Yale: no real suffix
    assert output_name("a.jpg", "jpg", 1) == "a_1.jpg"
    # two sources that would share an output name keep their full names
    assert plan_output_names(["p/a.png", "p/a.jpg", "q/a.png", "p/b.bmp"], "jpg") == ["a.png.jpg", "a.jpg.jpg", "a.jpg", "b.jpg"]


def test_onnxruntime_workers_are_threads_with_the_same_output(raw_tree: Path, tmp_path: Path, monkeypatch):
    """With ONNX Runtime, `--workers 2` runs two threads in this process (no process pool) and
    writes exactly what one worker writes."""
    import occtool.align.tree as tree

    one, two = tmp_path / "one", tmp_path / "two"
    assert run(["align", str(raw_tree), "--out", str(one), "--workers", "1", "--runtime", "onnxruntime"]) == 0
    monkeypatch.setattr(tree.mp, "get_context", lambda *a: pytest.fail("a process pool was started"))
    assert run(["align", str(raw_tree), "--out", str(two), "--workers", "2", "--runtime", "onnxruntime"]) == 0
    assert (one / "landmarks.csv").read_text() == (two / "landmarks.csv").read_text()
    faces = sorted(p.relative_to(one) for p in one.glob("*/*"))
    assert len(faces) == 6 and faces == sorted(p.relative_to(two) for p in two.glob("*/*"))
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in faces)
    assert json.loads((two / "metrics.json").read_text())["runtime"] == "onnxruntime"
