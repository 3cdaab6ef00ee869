"""The training loop on a synthetic identity tree: losses go down, resume is exact, the NaN guard
stops a broken run, outputs are complete, configs and CLI errors are clear."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from occtool.config import load_config
from occtool.errors import ConfigError, DataError, TrainingError
from occtool.training import TrainConfig, train
from tests.training.conftest import REPO, SMOKE

pytestmark = pytest.mark.xdist_group("training")


def smoke_cfg(tree: Path, *overrides: str) -> TrainConfig:
    return load_config(TrainConfig, yaml_path=SMOKE, overrides=[f"data.train_root={tree}", "device=cpu", *overrides])


def step_rows(history):
    return [r for r in history if r["kind"] == "step"]


@pytest.mark.slow
def test_smoke_run_writes_every_output(synthetic_tree, tmp_path):
    """The one end-to-end run with validation (the other tests here run with it off)."""
    out = tmp_path / "run"
    seen = []
    res = train(smoke_cfg(synthetic_tree), out_dir=out, epoch_hooks=[lambda run, m: seen.append((run.epoch, m))])
    assert res.steps == 6 and not res.interrupted
    assert [e for e, _ in seen] == [0, 1] and all("clean/cosine/rank1" in m for _, m in seen)
    for name in ("config.yaml", "metrics.csv", "metrics.json", "model.pt", "loss_curves.png", "validation_curves.png",
                 "panels/epoch_001.png", "panels/epoch_002.png"):
        assert (out / name).is_file(), name
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 6
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 6 and metrics["train"]["nonfinite_steps"] == 0
    for key in ("clean/cosine/rank1", "masked/cosine_occ/rank1", "masked/cosine_occ_matched/rank1", "masked/qaconv_occ/rank1", "occlusion/iou@0.5"):
        assert key in metrics["validation"], key
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["kind"] for r in rows].count("epoch") == 2
    assert {"loss_adaface", "loss_qaconv", "loss_occlusion", "loss_contrastive"} <= set(rows[0])
    # the model checkpoint loads with the models API (weights_only) and carries the config
    from occtool.models import load_model_checkpoint

    ck = load_model_checkpoint(out / "model.pt")
    assert ck.matcher is not None and ck.matcher.is_trained
    assert ck.config["data"]["p"] == 4


def test_fixed_seed_tiny_run_lowers_each_loss(lfw_six, tmp_path):
    """Pretrained frozen MobileFaceNet body + feature cache, 6 real people: the occlusion head,
    output layer (occlusion-aware embedding), neck, QAConv and AdaFace heads train for 40 steps;
    every loss goes down. (A random-initialised body in eval mode gives near-zero embeddings,
    hence real weights here; the synthetic smoke run covers the mechanics without ../shared.)"""
    cfg = smoke_cfg(
        lfw_six, "model.weights=default", "model.hidden_channels=64", "model.neck_channels=64",
        "data.p=6", "data.k=2", "data.feature_cache=true", "data.cache_views=4",
        "model.freeze_backbone=true", "model.train_output_layer=true", "loss.contrastive=0.5", "loss.distill=0.5",
        "loss.adaface=0.2", "loss.embedding=occlusion_aware", "loss.occlusion_warmup_steps=0", "optim.lr=0.003", "optim.output_layer_lr_scale=0.1", "schedule.epochs=1",
        "schedule.steps_per_epoch=40", "schedule.scheduler=constant", "validation.enabled=false",
        "checkpoint.every_steps=0",
    )
    res = train(cfg, out_dir=tmp_path / "run")
    rows = step_rows(res.history)
    assert len(rows) == 40
    for part in ("loss_adaface", "loss_qaconv", "loss_occlusion", "loss_contrastive", "loss_distill"):
        first = np.mean([r[part] for r in rows[:5]])
        last = np.mean([r[part] for r in rows[-5:]])
        assert last < 0.9 * first, (part, first, last)


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# The step losses of this run as the loop gave them before it was split into steps and a task
# (commit e9dda1f, threads=1): the same losses, hence the same RNG stream and data order.
GOLDEN_LOSSES = [33.57619857788086, 33.562583923339844, 25.54527473449707, 32.51091384887695]


def test_resume_matches_uninterrupted_run_bit_exact(synthetic_tree, tmp_path):
    overrides = ("schedule.epochs=2", "schedule.steps_per_epoch=2", "checkpoint.every_steps=0",
                 "validation.enabled=false", "threads=1")
    full = train(smoke_cfg(synthetic_tree, *overrides), out_dir=tmp_path / "full")
    assert [r["loss"] for r in step_rows(full.history)] == pytest.approx(GOLDEN_LOSSES, rel=1e-6)
    part = train(smoke_cfg(synthetic_tree, *overrides, "debug.stop_after_steps=3"), out_dir=tmp_path / "part")
    assert part.interrupted and part.steps == 3 and not (tmp_path / "part" / "model.pt").exists()
    resumed = train(smoke_cfg(synthetic_tree, *overrides), out_dir=tmp_path / "part", resume=True)
    assert resumed.steps == full.steps == 4
    a, b = step_rows(full.history), step_rows(resumed.history)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    sa = _state(tmp_path / "full" / "checkpoints" / "state-00000004.pt")["module"]
    sb = _state(tmp_path / "part" / "checkpoints" / "state-00000004.pt")["module"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_nan_guard_skips_a_step(synthetic_tree, tmp_path):
    """The config's debug hook reaches the loop's guard (the guard itself: tests/training/test_loop.py)."""
    overrides = ("schedule.epochs=1", "schedule.steps_per_epoch=3", "validation.enabled=false", "checkpoint.every_steps=0")
    res = train(smoke_cfg(synthetic_tree, *overrides, "debug.nonfinite_steps=[1]"), out_dir=tmp_path / "one")
    assert res.nonfinite_steps == 1 and res.steps == 3
    skipped = [r for r in step_rows(res.history) if r["skipped"]]
    assert [r["step"] for r in skipped] == [2]  # step index 1 is the second step


def test_nan_guard_monkeypatched_loss(synthetic_tree, tmp_path, monkeypatch):
    """A loss that really returns NaN (not the debug hook) is caught the same way."""
    import occtool.training.module as module_mod

    real = module_mod.occlusion_loss
    monkeypatch.setattr(module_mod, "occlusion_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(TrainingError, match="2 non-finite"):
        train(smoke_cfg(synthetic_tree, "schedule.max_nonfinite=2", "validation.enabled=false",
                        "checkpoint.every_steps=0", "loss.occlusion_warmup_steps=0"), out_dir=tmp_path / "r")
    # what was logged before the stop is on disk
    assert (tmp_path / "r" / "metrics.csv").is_file() and not (tmp_path / "r" / "model.pt").exists()


def test_frozen_backbone_trains_only_heads(synthetic_tree, tmp_path):
    cfg = smoke_cfg(synthetic_tree, "model.freeze_backbone=true", "schedule.epochs=1", "validation.enabled=false",
                    "checkpoint.every_steps=1", "checkpoint.keep_last=5")
    out = tmp_path / "frozen"
    train(cfg, out_dir=out)
    from occtool.models import load_model_checkpoint

    ck = load_model_checkpoint(out / "model.pt")
    # the body never moved between the first checkpoint (step 1) and the end (step 3); the heads did
    first = _state(out / "checkpoints" / "state-00000001.pt")["module"]
    for k, v in ck.model.backbone.state_dict().items():
        assert torch.equal(v, first["model.backbone." + k]), k
    moved = [k for k, v in ck.model.head.state_dict().items() if not torch.equal(v, first["model.head." + k])]
    assert moved


def test_config_errors(synthetic_tree, tmp_path):
    with pytest.raises(ConfigError, match="unknown config key"):
        smoke_cfg(synthetic_tree, "loss.nonsense=1")
    with pytest.raises(DataError, match="not found"):
        train(smoke_cfg(tmp_path / "missing"), out_dir=tmp_path / "r1")
    with pytest.raises(ConfigError, match="feature_cache"):
        train(smoke_cfg(synthetic_tree, "data.feature_cache=true"), out_dir=tmp_path / "r2")


def test_cli_errors_are_one_line(synthetic_tree, tmp_path, capsys):
    from occtool.cli.app import run

    rc = run(["train", "--config", str(SMOKE), "--out", str(tmp_path / "a"), "--set", "optim.nope=1",
              "--data", str(synthetic_tree)])
    err = capsys.readouterr().err
    assert rc == 1 and "unknown config key" in err and "Traceback" not in err
    rc = run(["train", "--config", str(SMOKE), "--out", str(tmp_path / "b"), "--data", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 1 and "not found" in err and err.count("\n") == 1
    rc = run(["train", "--config", str(SMOKE), "--out", str(tmp_path / "c")])
    assert rc == 1 and "--data" in capsys.readouterr().err
    rc = run(["train", "--out", str(tmp_path / "d"), "--resume"])
    assert rc == 1 and "not found" in capsys.readouterr().err


def test_cli_train_and_resume(synthetic_tree, tmp_path, capsys):
    from occtool.cli.app import run

    out = tmp_path / "cli"
    base = ["train", "--config", str(SMOKE), "--out", str(out), "--data", str(synthetic_tree), "--device", "cpu",
            "--set", "validation.enabled=false", "--set", "schedule.epochs=1"]
    assert run(base + ["--set", "debug.stop_after_steps=2"]) == 0
    assert "resume" in capsys.readouterr().err
    assert run(["train", "--out", str(out), "--resume", "--set", "debug.stop_after_steps=1000"]) == 0
    assert (out / "model.pt").is_file()
    assert run(base) == 1  # refuses to overwrite without --force
    assert "--force" in capsys.readouterr().err


def test_shipped_configs_load():
    for name in ("smoke.yaml", "lfw_head_only.yaml", "lfw_head_only_dev.yaml", "lfw_real_masks.yaml", "lfw_qaconv.yaml", "gpu_full.yaml"):
        cfg = load_config(TrainConfig, yaml_path=REPO / "configs" / name)
        assert cfg.data.p >= 2
    real = load_config(TrainConfig, yaml_path=REPO / "configs" / "lfw_real_masks.yaml")
    assert real.data.occlusion.weights.real_mask > 0 and real.data.occlusion.degrade.p > 0  # issue 12
    assert real.data.feature_cache and 1 <= real.schedule.occlusion_head_epochs < real.schedule.epochs
    assert "configs/lfw_real_masks.yaml" in (REPO / "examples" / "lfw_masked_protocol.sh").read_text()  # make demo's


def test_qaconv_options_tiny_run_lowers_the_qaconv_losses(lfw_six, tmp_path):
    """The issue-15 options (class memory, 3x3 two-layer neck with a position offset) on the
    frozen pretrained body + feature cache, 6 real people, P=3: both QAConv losses go down, and
    the saved model rebuilds the same neck."""
    cfg = smoke_cfg(
        lfw_six, "model.weights=default", "model.hidden_channels=16", "model.neck_channels=32",
        "model.neck_kernel=3", "model.neck_hidden=48", "model.neck_position=true",
        "data.p=3", "data.k=2", "data.feature_cache=true", "data.cache_views=2",
        "model.freeze_backbone=true", "loss.adaface=0", "loss.occlusion=0.1", "loss.qaconv_memory=1.0",
        "loss.qaconv_memory_negatives=2", "optim.lr=0.003", "schedule.epochs=1", "schedule.steps_per_epoch=30",
        "schedule.scheduler=constant", "validation.enabled=false", "checkpoint.every_steps=0",
    )
    res = train(cfg, out_dir=tmp_path / "run")
    rows = step_rows(res.history)
    for part in ("loss_qaconv", "loss_qaconv_memory"):
        first = np.mean([r[part] for r in rows[1:6]])  # step 1: the memory is still empty
        last = np.mean([r[part] for r in rows[-5:]])
        assert last < 0.9 * first, (part, first, last)
    from occtool.models import load_model_checkpoint

    model = load_model_checkpoint(tmp_path / "run" / "model.pt").model
    assert model.neck_options == {"kernel": 3, "hidden": 48, "position": True}


def test_binary_occlusion_targets_change_only_the_occlusion_loss(synthetic_tree, tmp_path):
    """loss.occlusion_target=binary: the head learns each cell's visible fraction thresholded at
    0.5. Same seed, same first batch: the first step's occlusion loss differs (the rectangles
    leave fractional edge cells), every other loss part is equal; a bad value is refused."""
    overrides = ("schedule.epochs=1", "schedule.steps_per_epoch=1", "checkpoint.every_steps=0",
                 "validation.enabled=false", "threads=1")
    rows = {t: step_rows(train(smoke_cfg(synthetic_tree, *overrides, f"loss.occlusion_target={t}"),
                               out_dir=tmp_path / t).history)[0] for t in ("fraction", "binary")}
    assert rows["fraction"]["loss_occlusion"] != pytest.approx(rows["binary"]["loss_occlusion"], rel=1e-3)
    others = [k for k in rows["fraction"] if k.startswith("loss_") and k != "loss_occlusion"]
    assert others and all(rows["fraction"][k] == rows["binary"][k] for k in others)
    with pytest.raises(ConfigError, match="occlusion_target"):
        smoke_cfg(synthetic_tree, "loss.occlusion_target=hard")
