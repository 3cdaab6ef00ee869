"""`classify predict --runtime`: the classifier (model.pt exported to the graph cache) and the
detector in ONNX Runtime give the classes PyTorch gives on real photos; a .onnx file cannot run in
PyTorch; a classifier that does not export is a clear error (onnxruntime) or runs in PyTorch (auto)."""

from __future__ import annotations

import csv
import json

import pytest

from occtool.cli.app import run

from .conftest import write_image

RAW = ("Aaron_Peirsol", "Abdullah_Gul")


def _predict(tmp_path, name, inputs, model, *extra) -> tuple[list[dict], dict]:
    out = tmp_path / name
    argv = ["classify", "predict", *map(str, inputs), "--model", str(model), "--out", str(out), "--threads", "1",
            "--set", f"graph_dir={tmp_path / 'graphs'}", *extra]
    assert run(argv) == 0
    return list(csv.DictReader(open(out / "predictions.csv"))), json.loads((out / "metrics.json").read_text())


def test_runtimes_give_the_same_classes_on_real_photos(tmp_path, random_checkpoint):
    from ..conftest import shared_or_skip

    root = shared_or_skip("data", "lfw", "images")
    shared_or_skip("weights", "retinaface_mnet025")
    photos = [sorted((root / p).iterdir())[0] for p in RAW]
    rows, metrics = {}, {}
    for rt in ("torch", "onnxruntime", "auto"):
        rows[rt], metrics[rt] = _predict(tmp_path, rt, photos, random_checkpoint, "--runtime", rt)
    assert metrics["torch"]["runtime"] == {"classifier": "torch", "detector": "torch"}
    assert metrics["onnxruntime"]["runtime"] == {"classifier": "onnxruntime", "detector": "onnxruntime"}
    assert metrics["auto"]["runtime"] == metrics["onnxruntime"]["runtime"]
    assert len(rows["torch"]) >= 2
    for rt in ("onnxruntime", "auto"):
        assert [r["class"] for r in rows[rt]] == [r["class"] for r in rows["torch"]]
        for a, b in zip(rows[rt], rows["torch"]):
            assert max(abs(float(a[k]) - float(b[k])) for k in ("x1", "y1", "x2", "y2")) < 0.1
            assert max(abs(float(a[f"p_{c}"]) - float(b[f"p_{c}"])) for c in ("none", "opaque", "transparent")) < 1e-3
    graphs = sorted(p.name.split("-")[0] for p in (tmp_path / "graphs").glob("*.onnx"))
    assert graphs == ["classifier", "retinaface"]  # one graph each, exported once, reused by auto


def test_onnx_file_cannot_run_in_torch(tmp_path, random_checkpoint, capsys):
    from occtool.classify.checkpoint import load_classifier
    from occtool.classify.export import export_onnx
    from occtool.classify.geometry import to_input

    import numpy as np

    onnx = tmp_path / "m.onnx"
    crops = np.random.default_rng(0).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    export_onnx(load_classifier(random_checkpoint).model, onnx, check_inputs=to_input(crops))
    img = write_image(tmp_path / "in" / "a.png")
    rows, metrics = _predict(tmp_path, "ok", [img], onnx, "--whole-image")
    assert metrics["runtime"]["classifier"] == "onnxruntime" and len(rows) == 1
    capsys.readouterr()
    assert run(["classify", "predict", str(img), "--model", str(onnx), "--out", str(tmp_path / "bad"),
                "--whole-image", "--runtime", "torch"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --runtime torch") and "ONNX Runtime" in err and "Traceback" not in err


def test_a_classifier_that_does_not_export(tmp_path, random_checkpoint, capsys, monkeypatch):
    import torch

    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::made_up' to ONNX opset version 17 is not supported.")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    img = write_image(tmp_path / "in" / "a.png")
    rows, metrics = _predict(tmp_path, "auto", [img], random_checkpoint, "--whole-image", "--runtime", "auto")
    assert metrics["runtime"]["classifier"] == "torch" and len(rows) == 1  # auto: PyTorch instead
    capsys.readouterr()
    out = tmp_path / "strict"
    assert run(["classify", "predict", str(img), "--model", str(random_checkpoint), "--out", str(out), "--whole-image",
                "--runtime", "onnxruntime", "--set", f"graph_dir={tmp_path / 'graphs'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot export classifier mobilenet_v3_small to ONNX") and "made_up" in err
    assert len(err.splitlines()) == 1 and not out.exists()  # before anything is written
    assert not list((tmp_path / "graphs").glob("*.onnx"))


def test_runtime_value_is_checked(tmp_path, random_checkpoint, capsys):
    img = write_image(tmp_path / "a.png")
    assert run(["classify", "predict", str(img), "--model", str(random_checkpoint), "--out", str(tmp_path / "o"),
                "--whole-image", "--runtime", "tensorrt"]) == 1
    assert "runtime" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
