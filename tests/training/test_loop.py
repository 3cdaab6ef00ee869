"""The training loop's machinery on a toy task (a small MLP on separable random vectors, no
images, no validation set): milliseconds per run. Exact resume, the NaN guard, atomic
checkpoints, best tracking and epoch hooks are properties of the loop, not of a model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from occtool.errors import TrainingError
from occtool.io import atomic_save
from occtool.training import state as st
from occtool.training.loop import run_loop
from occtool.training.task import LoopSettings, StepLoss


@dataclasses.dataclass
class ToyConfig:
    lr: float = 0.2
    samples: int = 64
    batch: int = 16


class ToyTask:
    """Class of a vector = argmax of a fixed random projection; noise on the inputs and dropout
    use the global torch RNG, so a resume is exact only if the loop restores it."""

    def __init__(self, nan_at: tuple[int, ...] = (), **settings) -> None:
        base = dict(epochs=3, seed=0, device="cpu", log_every=1, grad_clip=5.0, checkpoint_every_epochs=1, keep_last=0)
        self.settings = LoopSettings(**{**base, **settings})
        self.config = ToyConfig()
        self.nan_at = set(nan_at)
        self.epoch, self.position = 0, 0
        self.saved: list[tuple[str, str]] = []

    def setup(self, env):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(self.config.samples, 8, generator=g)
        self.y = (self.x @ torch.randn(8, 3, generator=g)).argmax(1)
        self.model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))
        return self.model

    @property
    def steps_per_epoch(self) -> int:
        return self.config.samples // self.config.batch

    def optimizer(self, module, *, total_steps):
        opt = torch.optim.SGD(module.parameters(), lr=self.config.lr, momentum=0.9)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / (total_steps + 1))

    def batches(self, epoch, *, first_step):
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0
        perm = torch.randperm(self.config.samples, generator=torch.Generator().manual_seed(1000 + epoch))
        b = self.config.batch
        while self.position < self.steps_per_epoch:
            idx = perm[self.position * b:(self.position + 1) * b]
            self.position += 1
            yield self.x[idx], self.y[idx]

    def loss(self, module, batch, *, step):
        x, y = batch
        logits = module(x + 0.05 * torch.randn_like(x))
        ce = F.cross_entropy(logits, y)
        total = ce * float("nan") if step in self.nan_at else ce
        return StepLoss(total=total, parts={"ce": ce.detach()}, log={"acc": (logits.argmax(1) == y).float().mean()})

    def validate(self, epoch, *, step):
        self.model.eval()
        with torch.no_grad():
            acc = float((self.model(self.x).argmax(1) == self.y).float().mean())
        return {"val/acc": acc}

    def is_better(self, metrics, best):
        return not best or metrics["val/acc"] > best["value"]

    def best_record(self, metrics, *, epoch, step):
        return {"value": metrics["val/acc"], "epoch": epoch, "step": step}

    def save_model(self, path, *, extra, kind):
        self.saved.append((Path(path).name, kind))
        atomic_save(path, lambda tmp: torch.save({"model": self.model.state_dict(), **extra}, tmp))

    def state_dict(self):
        return {"sampler": {"epoch": self.epoch, "position": self.position}}

    def load_state_dict(self, state):
        self.epoch, self.position = state["sampler"]["epoch"], state["sampler"]["position"]
        return self.epoch

    def finish(self, run):
        path = run.out / "model.pt"
        self.save_model(path, extra={"step": run.step}, kind="final")
        return path, {"validation": run.last_val, "best": run.best, "steps": run.step}


def _untimed(history):
    """History rows without the wall time, NaN as a string (NaN != NaN)."""
    return [{k: ("nan" if v != v else v) for k, v in r.items() if k != "time_s"} for r in history]


def _load(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_fixed_seed_run_lowers_the_loss_and_repeats_exactly(tmp_path):
    res = run_loop(ToyTask(epochs=4), out_dir=tmp_path / "a")
    rows = [r for r in res.history if r["kind"] == "step"]
    assert [r["step"] for r in rows] == list(range(1, 17))
    assert sum(r["loss"] for r in rows[-4:]) < 0.5 * sum(r["loss"] for r in rows[:4])
    assert list(rows[0]) == ["kind", "epoch", "step", "lr", "loss", "loss_ce", "acc", "grad_norm", "skipped", "time_s"]
    again = run_loop(ToyTask(epochs=4), out_dir=tmp_path / "b")
    assert _untimed(again.history) == _untimed(res.history)
    _assert_same_tensors(_load(tmp_path / "a" / "model.pt")["model"], _load(tmp_path / "b" / "model.pt")["model"])
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert set(metrics) == {"validation", "best", "steps", "wall_time_s"} and metrics["steps"] == 16
    for name in ("config.yaml", "metrics.csv", "loss_curves.png", "best.pt"):
        assert (tmp_path / "a" / name).is_file(), name


@pytest.mark.parametrize("stop", [6, 4], ids=["mid-epoch", "epoch-end"])
def test_interrupted_then_resumed_equals_uninterrupted_bit_exact(tmp_path, stop):
    full = run_loop(ToyTask(), out_dir=tmp_path / "full")
    part = run_loop(ToyTask(stop_after_steps=stop), out_dir=tmp_path / "part")
    assert part.interrupted and part.steps == stop and part.model_path is None
    assert not (tmp_path / "part" / "model.pt").exists()
    resumed = run_loop(ToyTask(), out_dir=tmp_path / "part", resume=True)
    assert resumed.steps == full.steps == 12 and not resumed.interrupted
    assert _untimed(resumed.history) == _untimed(full.history)
    a = _load(tmp_path / "full" / "checkpoints" / "state-00000012.pt")
    b = _load(tmp_path / "part" / "checkpoints" / "state-00000012.pt")
    _assert_same_tensors(a["module"], b["module"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k in a["optimizer"]["state"]:
        _assert_same_tensors(a["optimizer"]["state"][k], b["optimizer"]["state"][k])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    _assert_same_tensors(_load(tmp_path / "full" / "model.pt")["model"], _load(tmp_path / "part" / "model.pt")["model"])


def test_state_file_holds_what_resume_needs(tmp_path):
    run_loop(ToyTask(epochs=1, checkpoint_every_steps=2), out_dir=tmp_path / "r")
    state = st.load_state(st.find_state(True, tmp_path / "r"))
    assert list(state) == ["format", "format_version", "step", "module", "optimizer", "scheduler", "scaler",
                           "sampler", "rng", "nonfinite_run", "nonfinite_total", "history", "best", "config"]
    assert state["step"] == 4 and state["sampler"] == {"epoch": 0, "position": 4}
    assert state["config"] == {"lr": 0.2, "samples": 64, "batch": 16}
    ck = tmp_path / "r" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["latest.json", "model-00000002.pt", "model-00000004.pt",
                                                   "state-00000002.pt", "state-00000004.pt"]


def test_nan_guard_skips_the_update_then_stops(tmp_path):
    task = ToyTask(epochs=1, nonfinite_steps=(1,), checkpoint_every_steps=1)
    res = run_loop(task, out_dir=tmp_path / "one")
    assert res.nonfinite_steps == 1 and res.steps == 4
    rows = [r for r in res.history if r["kind"] == "step"]
    assert [r["skipped"] for r in rows] == [0, 1, 0, 0]
    assert rows[1]["loss"] != rows[1]["loss"]  # logged as NaN
    ck = tmp_path / "one" / "checkpoints"
    _assert_same_tensors(_load(ck / "state-00000001.pt")["module"], _load(ck / "state-00000002.pt")["module"])
    assert _load(ck / "state-00000002.pt")["nonfinite_run"] == 1 and _load(ck / "state-00000003.pt")["nonfinite_run"] == 0
    # a loss that really is NaN, three steps in a row: the run stops, its log is on disk
    with pytest.raises(TrainingError, match="3 non-finite"):
        run_loop(ToyTask(nan_at=(2, 3, 4), max_nonfinite=3), out_dir=tmp_path / "stop")
    assert (tmp_path / "stop" / "metrics.csv").read_text().count("\n") == 6  # header, steps 1-4, the epoch-1 validation
    assert not (tmp_path / "stop" / "model.pt").exists()


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A crash while writing a training state leaves the previous one complete and named by
    latest.json, no partial file; the run resumes from it and ends as an uninterrupted one."""
    out = tmp_path / "crash"
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        if isinstance(obj, dict) and obj.get("format") == st.STATE_FORMAT and obj["step"] == 3:
            Path(f).write_bytes(b"partial")
            raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        run_loop(ToyTask(checkpoint_every_steps=1), out_dir=out)
    monkeypatch.setattr(torch, "save", real_save)
    ck = out / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["latest.json", "model-00000001.pt", "model-00000002.pt",
                                                   "model-00000003.pt", "state-00000001.pt", "state-00000002.pt"]
    assert json.loads((ck / "latest.json").read_text()) == {"state": "state-00000002.pt", "step": 2}
    resumed = run_loop(ToyTask(checkpoint_every_steps=1), out_dir=out, resume=True)
    full = run_loop(ToyTask(checkpoint_every_steps=1), out_dir=tmp_path / "full")
    assert _untimed(resumed.history) == _untimed(full.history)
    _assert_same_tensors(_load(out / "model.pt")["model"], _load(tmp_path / "full" / "model.pt")["model"])


def test_validation_best_and_epoch_hooks(tmp_path):
    seen = []
    task = ToyTask(epochs=3, validate_every_epochs=2, validate_at_start=True)
    res = run_loop(task, out_dir=tmp_path / "r", epoch_hooks=[lambda run, m: seen.append((run.epoch, run.step, m))])
    assert [(e, s, bool(m)) for e, s, m in seen] == [(0, 4, False), (1, 8, True), (2, 12, True)]
    epochs = [r for r in res.history if r["kind"] == "epoch"]
    assert [(r["epoch"], r["step"]) for r in epochs] == [(0, 0), (2, 8), (3, 12)]  # the start, every 2nd, the last
    values = [r["val/acc"] for r in epochs]
    best_i = max(range(3), key=lambda i: (values[i], -i))
    assert res.metrics["best"] == {"value": values[best_i], "epoch": epochs[best_i]["epoch"], "step": epochs[best_i]["step"]}
    assert res.metrics["validation"] == {"val/acc": values[-1]}
    best_saves = [kind for name, kind in task.saved if name == "best.pt"]
    assert 1 <= len(best_saves) <= 3 and _load(tmp_path / "r" / "best.pt")["step"] == epochs[best_i]["step"]
    assert [n for n, k in task.saved if k == "checkpoint"] == ["model-00000004.pt", "model-00000008.pt", "model-00000012.pt"]
