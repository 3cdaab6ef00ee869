"""`RunState`: everything the training loop carries from step to step, in one object.

The training state file (`occtool.training.state`, written by `steps.save_checkpoint`) holds
its counters, history, best record and the module/optimiser/scheduler/scaler states, plus the
task's own state (e.g. the sampler position) and the global RNG states (python, numpy, torch,
cuda), which live in their libraries, not here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from occtool.training.distributed import DistInfo


def unwrap(m: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return m.module if hasattr(m, "module") and isinstance(m.module, nn.Module) else m


@dataclass
class RunState:
    out: Path
    device: torch.device
    dist_info: DistInfo
    module: nn.Module  # what trains (DDP-wrapped when distributed); its unwrapped state is saved
    optimizer: torch.optim.Optimizer
    scheduler: Any  # torch LR scheduler, stepped once per step
    scaler: torch.amp.GradScaler
    amp_on: bool
    epochs: int
    steps_per_epoch: int
    step: int = 0  # steps done (also the index of the next step)
    epoch: int = 0  # 0-based epoch in progress
    nonfinite_run: int = 0  # non-finite steps in a row (the NaN guard)
    nonfinite_total: int = 0
    history: list[dict] = field(default_factory=list)  # metrics.csv rows: kind "step" and "epoch"
    best: dict = field(default_factory=dict)  # the task's best_record of the best epoch so far
    last_val: dict = field(default_factory=dict)  # the latest validation metrics
    interrupted: bool = False
    t_start: float = field(default_factory=time.time)
    t_log: float = field(default_factory=time.time)  # last time metrics.csv/curves were written

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def is_main(self) -> bool:
        return self.dist_info.is_main

    def elapsed_s(self) -> float:
        return time.time() - self.t_start

    def module_state(self) -> dict:
        return {k: v.detach().cpu() for k, v in unwrap(self.module).state_dict().items()}

    def load(self, state: dict) -> None:
        """Restore the loop's part of a training state (the module, optimiser, counters...)."""
        unwrap(self.module).load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.nonfinite_run, self.nonfinite_total = int(state["nonfinite_run"]), int(state["nonfinite_total"])
        self.history = list(state.get("history", []))
        self.best = dict(state.get("best", {}))
