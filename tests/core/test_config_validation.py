"""Every user-settable value is range-checked: a bad one is `error: <key>: expected ...` (one
line, exit 1) from the CLI, never a traceback. Table-driven over the config classes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from occtool.align.tree import AlignConfig
from occtool.augment.config import AugmentConfig
from occtool.cli.app import run
from occtool.config import ConfigValueError, check_device, check_interval, check_range, load_config
from occtool.device import resolve_device
from occtool.errors import ConfigError
from occtool.training.config import TrainConfig

TRAIN = [
    ("model.backbone=resnet9", "model.backbone: expected one of mobilefacenet, ir18, ir34, ir50, ir100"),
    ("model.hidden_channels=0", "model.hidden_channels: expected a number >= 1"),
    ("model.neck_channels=-1", "model.neck_channels: expected a number >= 1 or null"),
    ("data.k=0", "data.k: expected a number >= 1"),
    ("data.p=0", "data.p:"),
    ("data.cache_clean_views=9", "data.cache_clean_views: expected a number in [0, 6]"),
    ("data.occlusion.keep_clean=1.5", "data.occlusion.keep_clean: expected a number in [0.0, 1.0]"),
    ("data.occlusion.weights.hand=-1", "data.occlusion.weights.hand: expected a number >= 0.0"),
    ("loss.adaface=-1", "loss.adaface:"),
    ("loss.adaface_params.s=0", "loss.adaface_params.s: expected a number > 0.0"),
    ("loss.contrastive_temperature=0", "loss.contrastive_temperature:"),
    ("optim.lr=0", "optim.lr: expected a number > 0.0"),
    ("optim.momentum=1", "optim.momentum: expected a number in [0.0, 1.0)"),
    ("optim.grad_clip=-1", "optim.grad_clip:"),
    ("schedule.epochs=0", "schedule.epochs:"),
    ("schedule.milestones=[3,1]", "schedule.milestones: expected increasing epochs >= 1"),
    ("schedule.min_lr_ratio=2", "schedule.min_lr_ratio:"),
    ("schedule.seed=-1", "schedule.seed:"),
    ("validation.batch_size=0", "validation.batch_size:"),
    ("validation.every_epochs=0", "validation.every_epochs:"),
    ("validation.probe_occlusion.transparent.opacity=[0.5,0.2]", "validation.probe_occlusion.transparent.opacity: expected [min, max]"),
    ("test.families=[no_such_occluder]", "test.families: expected any of medical_mask, rectangles"),
    ("checkpoint.keep_last=-1", "checkpoint.keep_last:"),
    ("debug.stop_after_steps=0", "debug.stop_after_steps:"),
    ("device=bogus", "device: expected auto, cpu, cuda or cuda:N, got 'bogus'"),
    ("device=cuda:x", "device: expected auto, cpu, cuda or cuda:N"),
    ("threads=0", "threads:"),
]
AUGMENT = [
    ("copies=0", "copies: expected a number >= 1"),
    ("workers=-1", "workers:"),
    ("jpeg_quality=101", "jpeg_quality: expected a number in [1, 100]"),
    ("mask_size=[0,7]", "mask_size: expected [H, W], integers >= 1"),
    ("keep_clean=-0.1", "keep_clean:"),
    ("keep_clean=.nan", "keep_clean:"),
    ("keypoint_threshold=2", "keypoint_threshold:"),
    ("weights.steam=-1", "weights.steam: expected a number >= 0.0"),
    ("rectangles.count=[0,2]", "rectangles.count: expected [min, max] with min <= max, both >= 1"),
    ("rectangles.size=[0.5,1.5]", "rectangles.size:"),
    ("rectangles.fills=[plaid]", "rectangles.fills: expected one or more of solid, noise"),
    ("transparent.opacity=[0,1]", "transparent.opacity:"),
    ("medical_mask.recolor_cloth=2", "medical_mask.recolor_cloth:"),
    ("medical_mask.brightness=[0,1]", "medical_mask.brightness:"),
]
ALIGN = [
    ("size=[8,8]", "size: expected [height, width], both >= 16"),
    ("score_threshold=1.5", "score_threshold:"),
    ("nms_iou=0", "nms_iou:"),
    ("max_side=-1", "max_side:"),
    ("fallback_crop=0", "fallback_crop:"),
    ("jpeg_quality=0", "jpeg_quality:"),
    ("workers=0", "workers:"),
    ("device=bogus", "device: expected auto, cpu, cuda or cuda:N"),
]
PROTOCOL = [
    ("folds=6-10", "folds: expected null unless pairs is set"),
    ("folds=0-3", "folds: expected fold numbers >= 1"),
    ("folds=7-2", "folds: expected fold numbers >= 1"),
]


def _argv(command: str, tmp_path: Path) -> list[str]:
    src = tmp_path / "src"
    (src / "someone").mkdir(parents=True, exist_ok=True)
    out = str(tmp_path / "out")
    return {
        "train": ["train", "--out", out],
        "augment": ["augment", str(src), "--out", out],
        "align": ["align", str(src), "--out", out],
        "make-protocol": ["make-protocol", str(src), "--out", out, "--pairs", str(tmp_path / "pairs.txt")],
    }[command]


CASES = ([("train", *c) for c in TRAIN] + [("augment", *c) for c in AUGMENT] + [("align", *c) for c in ALIGN]
         + [("make-protocol", *c) for c in PROTOCOL])


@pytest.mark.parametrize("command,setting,message", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_bad_value_is_one_error_line(command, setting, message, tmp_path, capsys):
    argv = _argv(command, tmp_path)
    if command == "make-protocol" and setting == "folds=6-10":
        argv = argv[:-2]  # no --pairs
    assert run(argv + ["--set", setting]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == err[-1] and errors[0].startswith(f"error: {message}"), err
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_bad_device_in_a_yaml_file(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("device: bogus\n")
    assert run(["train", "--out", str(tmp_path / "out"), "--config", str(cfg)]) == 1
    assert capsys.readouterr().err.strip() == "error: device: expected auto, cpu, cuda or cuda:N, got 'bogus'"
    assert run(["align", str(tmp_path), "--out", str(tmp_path / "out"), "--device", "tpu"]) == 1
    assert "error: device: expected auto, cpu, cuda or cuda:N, got 'tpu'" in capsys.readouterr().err


def test_configs_checked_when_built_in_python_too():
    with pytest.raises(ConfigError, match=r"^k: expected a number >= 1, got 0$"):
        load_config(TrainConfig, overrides=["data.k=1"]).data.__class__(k=0)
    with pytest.raises(ConfigError, match="copies"):
        AugmentConfig(copies=0)
    assert AlignConfig().device == "auto"  # auto = CUDA when available (align too)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device: expected auto, cpu, cuda or cuda:N, got 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_check_helpers():
    check_range("x", 0, lo=0)
    check_range("x", None, lo=1, optional=True)
    for bad in (-1, math.inf, math.nan, True, "3"):
        with pytest.raises(ConfigValueError, match="^x: expected a number >= 0"):
            check_range("x", bad, lo=0)
    with pytest.raises(ConfigValueError, match=r"^x: expected a number in \(0, 1\), got 1$"):
        check_range("x", 1, lo=0, hi=1, lo_open=True, hi_open=True)
    check_interval("r", (0.2, 0.2), lo=0.0, hi=1.0)
    with pytest.raises(ConfigValueError, match=r"^r: expected \[min, max\] with min <= max, got \[0.5, 0.2\]$"):
        check_interval("r", (0.5, 0.2))
    for ok in ("auto", "cpu", "cuda", "cuda:3"):
        check_device("device", ok)
    assert ConfigValueError("k", "a number >= 1", 0).under("data.").args[0] == "data.k: expected a number >= 1, got 0"
