"""Defects 7, 8 and 4 (train): --resume refuses a changed config or other data unless
--resume-override (then really applied and recorded); resuming a finished run, or one killed
while writing model.pt, keeps the validation history; a disk full during training is one line,
leaves no temp file, and the run resumes."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch

from occtool.cli.app import run
from occtool.io import MARKER
from tests.robustness.conftest import one_error_line
from tests.training.conftest import SMOKE, make_tree

pytestmark = [pytest.mark.xdist_group("training"), pytest.mark.slow]  # 6 short trainings: ~1 min


def _base(tree: Path, out: Path) -> list[str]:
    return ["train", "--config", str(SMOKE), "--data", str(tree), "--out", str(out), "--device", "cpu",
            "--set", "threads=1", "--set", "schedule.epochs=1", "--set", "schedule.steps_per_epoch=4",
            "--set", "checkpoint.every_steps=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tree, a run interrupted after 2 of 4 steps, and the same run finished."""
    root = tmp_path_factory.mktemp("resume")
    tree = make_tree(root / "tree")
    part = root / "part"
    assert run(_base(tree, part) + ["--set", "debug.stop_after_steps=2"]) == 0
    done = root / "done"
    shutil.copytree(part, done, symlinks=True)
    assert run(["train", "--out", str(done), "--resume", "--set", "threads=1", "--set", "debug.stop_after_steps=1000"]) == 0
    return tree, part, done


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _newest_state(out: Path) -> dict:
    return torch.load(sorted((out / "checkpoints").glob("state-*.pt"))[-1], weights_only=True)


def test_changed_config_is_refused_naming_the_keys(runs, tmp_path, capsys):
    _, part, _ = runs
    out = _copy(part, tmp_path)
    before = (out / "config.yaml").read_text()
    assert run(["train", "--out", str(out), "--resume", "--set", "optim.lr=0.5"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "optim.lr 0.001 -> 0.5" in line and "--resume-override" in line
    assert (out / "config.yaml").read_text() == before  # nothing rewritten


def test_other_data_is_refused(runs, tmp_path, capsys):
    _, part, _ = runs
    out = _copy(part, tmp_path)
    other = make_tree(tmp_path / "other", identities=8, per_identity=4, seed=1)
    assert run(["train", "--out", str(out), "--resume", "--data", str(other)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "data.train_root" in line


def test_resume_override_is_applied_and_recorded(runs, tmp_path):
    _, part, _ = runs
    out = _copy(part, tmp_path)
    assert run(["train", "--out", str(out), "--resume", "--resume-override", "--set", "optim.lr=0.5",
                "--set", "threads=1", "--set", "debug.stop_after_steps=1000"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumes"] == [{"step": 2, "changed": {"optim.lr": [0.001, 0.5]}}]
    sched = _newest_state(out)["scheduler"]
    assert max(sched["base_lrs"]) > 0.01  # the new learning rate is the one in use
    assert "lr: 0.5" in (out / "config.yaml").read_text()


@pytest.mark.parametrize("lost", [(), ("model.pt", "metrics.json")], ids=["finished", "killed-writing-model"])
def test_resume_of_a_finished_run_keeps_the_history(runs, tmp_path, lost):
    _, _, done = runs
    out = _copy(done, tmp_path)
    want = json.loads((out / "metrics.json").read_text())["validation"]
    assert want
    for name in lost:
        (out / name).unlink()
    assert run(["train", "--out", str(out), "--resume", "--set", "threads=1", "--set", "debug.stop_after_steps=1000"]) == 0
    assert json.loads((out / "metrics.json").read_text())["validation"] == want
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["extra"]["validation"] == pytest.approx(want)
    assert "epoch" in (out / "metrics.csv").read_text()


def test_disk_full_while_checkpointing(runs, tmp_path, monkeypatch, capsys):
    tree, _, _ = runs
    out = tmp_path / "full"
    real = torch.save

    def full(obj, f, *a, **k):
        if Path(str(f)).name.startswith(".state-"):
            Path(f).write_bytes(b"half")  # what a full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full)
    assert run(_base(tree, out)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "No space left on device" in line and f"occtool train --out {out} --resume" in line
    assert not [p for p in out.rglob("*") if ".occtmp-" in p.name]
    assert json.loads((out / MARKER).read_text())["status"].startswith("failed")
    monkeypatch.setattr(torch, "save", real)
    assert run(["train", "--out", str(out), "--resume", "--set", "threads=1", "--set", "debug.stop_after_steps=1000"]) == 1  # no state was saved
    assert "no training state" in capsys.readouterr().err
