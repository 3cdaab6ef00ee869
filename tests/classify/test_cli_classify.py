import csv
import json

import pytest
import torch

from occtool.cli.app import run

from .conftest import write_image, write_video


def _error(capsys, argv) -> str:
    assert run(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_predict_images_whole_image(tmp_path, random_checkpoint, capsys):
    write_image(tmp_path / "in" / "a.png", value=50)
    write_image(tmp_path / "in" / "sub" / "b.png", value=200)
    out = tmp_path / "out"
    assert run(["classify", "predict", str(tmp_path / "in"), "--model", str(random_checkpoint), "--out", str(out),
                "--whole-image", "--set", "costs.slow=2"]) == 0
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["source"].endswith(n) for r, n in zip(rows, ("a.png", "b.png"))] == [True, True]
    assert {r["class"] for r in rows} <= {"none", "opaque", "transparent"}
    assert (rows[0]["crop_x1"], rows[0]["crop_x2"]) == ("0", "112")  # the whole aligned crop
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["faces"]["total"] == 2 and metrics["estimate"]["always_slow_s"] == 4.0
    assert metrics["timing"]["classifier_ms_per_face"] > 0
    assert "always slow" in capsys.readouterr().err
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 2


def test_predict_video_with_bbox_every_2(tmp_path, random_checkpoint):
    video = write_video(tmp_path / "clip.avi", frames=5)
    out = tmp_path / "out"
    assert run(["classify", "predict", str(video), "--model", str(random_checkpoint), "--out", str(out),
                "--bbox", "30,20,90,80", "--every", "2"]) == 0
    frames = list(csv.DictReader(open(out / "frames.csv")))
    assert [(f["frame"], f["weight"]) for f in frames] == [("0", "2"), ("2", "2"), ("4", "1")]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"]["total"] == 5 and metrics["faces"]["total"] == 3


def test_evaluate_a_class_tree(tmp_path, random_checkpoint):
    for cls, v in (("none", 60), ("transparent", 190)):
        write_image(tmp_path / "tree" / cls / f"s01.{cls}", value=v)  # extension-less files decode too
    out = tmp_path / "ev"
    assert run(["classify", "evaluate", "--data", str(tmp_path / "tree"), "--model", str(random_checkpoint),
                "--out", str(out), "--whole-image"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 2 and sum(map(sum, metrics["confusion"])) == 2
    assert metrics["labels"] == {"none": 1, "opaque": 0, "transparent": 1}


def test_error_paths(tmp_path, random_checkpoint, capsys):
    model = str(random_checkpoint)
    img = write_image(tmp_path / "ok.png")
    err = _error(capsys, ["classify", "predict", str(tmp_path / "missing.png"), "--model", model, "--out", str(tmp_path / "o1")])
    assert "input not found" in err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    assert "does not decode" in _error(capsys, ["classify", "predict", str(bad), "--model", model, "--out", str(tmp_path / "o2"), "--whole-image"])
    badvid = tmp_path / "bad.mp4"
    badvid.write_bytes(b"\x00" * 2048)
    assert "video" in _error(capsys, ["classify", "predict", str(badvid), "--model", model, "--out", str(tmp_path / "o3"), "--bbox", "1,1,5,5"])
    face_ckpt = tmp_path / "face.pt"
    torch.save({"format": "occtool", "format_version": 1}, face_ckpt)
    assert "face-model checkpoint" in _error(capsys, ["classify", "predict", str(img), "--model", str(face_ckpt), "--out", str(tmp_path / "o4")])
    assert "face-model checkpoint" in _error(capsys, ["classify", "export", "--checkpoint", str(face_ckpt), "--out", str(tmp_path / "m.onnx")])
    assert "--bbox" in _error(capsys, ["classify", "predict", str(img), "--model", model, "--out", str(tmp_path / "o5"), "--bbox", "10,10,5"])
    assert "cannot write" in _error(capsys, ["classify", "predict", str(img), "--model", model, "--out", str(img / "sub"), "--whole-image"])
    assert "choose one" in _error(capsys, ["classify", "predict", str(img), "--model", model, "--out", str(tmp_path / "o6"), "--whole-image", "--bbox", "1,1,5,5"])
    assert "not found" in _error(capsys, ["classify", "train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "t")])
    assert "check-data" in _error(capsys, ["classify", "export", "--checkpoint", model, "--out", str(tmp_path / "m.onnx")])
    assert not (tmp_path / "o2").exists() and not (tmp_path / "t").exists()


def test_predict_with_the_detector_on_a_real_face(tmp_path, random_checkpoint):
    from ..conftest import shared_or_skip

    face = shared_or_skip("data", "yale", "subject01.glasses")
    shared_or_skip("weights", "retinaface_mnet025")
    out = tmp_path / "out"
    assert run(["classify", "predict", str(face), "--model", str(random_checkpoint), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 1  # one face in a 320x243 Yale image
    x1, y1, x2, y2 = (float(rows[0][k]) for k in ("x1", "y1", "x2", "y2"))
    assert 60 < x1 < x2 < 260 and 20 < y1 < y2 < 243  # the face, roughly centred
    assert int(rows[0]["crop_x1"]) < x1 and int(rows[0]["crop_x2"]) > x2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["boxes"] == "RetinaFace detector" and metrics["timing"]["detector_ms_per_frame"] > 0


def test_train_cli_validation_and_test_people(tmp_path, capsys):
    from .test_train import _class_tree

    data = _class_tree(tmp_path / "data", people=4, per_class=1)
    out = tmp_path / "run"
    argv = ["classify", "train", "--data", str(data), "--out", str(out), "--arch", "mobilenet_v3_small", "--weights", "none",
            "--epochs", "1", "--val-holdout-people", "1", "--set", "test_people=[p0]", "--set", "batch_size=6"]
    assert run(argv) == 0
    err = capsys.readouterr().err
    assert "validation accuracy" in err and "test accuracy" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["n"] == 3 and metrics["test"]["n"] == 3
    assert (metrics["data"]["train_identities"], metrics["data"]["validation_identities"]) == (2, 1)
    assert "val_pairs_file" in _error(capsys, argv[:4] + ["--out", str(tmp_path / "r2"), "--set", "val_pairs_file=x"])
    assert "val_holdout_people" in _error(capsys, argv[:4] + ["--out", str(tmp_path / "r3"), "--val-holdout-people", "-1"])
    assert run(argv[:4] + ["--out", str(out), "--resume", "--epochs", "2"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2
