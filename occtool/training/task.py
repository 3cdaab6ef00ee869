"""The seam between the training loop and what is trained.

The loop (`occtool.training.loop.run_loop`) owns the machinery every training command shares:
device and DDP set-up, seeds, steps, mixed precision and gradient scaling, the NaN guard,
gradient clipping, logging (metrics.csv, curves), checkpoints and exact `--resume`, validation
scheduling, best tracking and timing. A `Task` owns what differs between commands: the model
and its trainable parameters, the optimiser and schedule, the batches, the loss, the
validation, the "better" rule, what a model checkpoint holds, and the final report.
`occtool train` is one task (`occtool.training.multitask.MultiTaskTraining`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Optional, Protocol

import torch
from torch import nn

from occtool.progress import ProgressFn
from occtool.training.distributed import DistInfo

if TYPE_CHECKING:
    from occtool.training.run_state import RunState

SayFn = Callable[[str], None]
ModelKind = Literal["checkpoint", "best", "final"]
# Called on rank 0 at the end of every epoch with the run state and that epoch's validation
# metrics ({} when the epoch was not validated), after best tracking, before the checkpoint.
EpochHook = Callable[["RunState", dict], None]


@dataclass(frozen=True)
class LoopSettings:
    """What the loop needs from a command's configuration (each command maps its own config here)."""

    epochs: int
    seed: int
    device: str = "auto"
    threads: int = 0  # torch threads; 0: leave torch's default
    log_every: int = 10  # steps between metrics.csv rows (and the first step)
    log_write_every_s: float = 30.0  # rewrite metrics.csv/curves at most this often within an epoch
    max_nonfinite: int = 5  # stop after this many non-finite steps in a row
    grad_clip: Optional[float] = None  # max global gradient norm; None/0: no clipping
    amp: bool = False  # float16 autocast + GradScaler (CUDA only)
    checkpoint_every_steps: int = 0  # 0: only at epoch ends
    checkpoint_every_epochs: int = 1  # 0: never at epoch ends
    keep_last: int = 3  # training states and model checkpoints kept in checkpoints/
    validate_every_epochs: int = 1  # the last epoch is always validated
    validate_at_start: bool = False  # validate the starting model as "epoch 0" (not on resume)
    nonfinite_steps: tuple[int, ...] = ()  # debug: inject a NaN loss at these step indices
    stop_after_steps: Optional[int] = None  # debug: end as if interrupted after N steps
    # config keys (dotted; "x." = a whole section) that may differ on --resume without
    # --resume-override: they do not change what is computed (device, threads, logging...)
    resume_free_keys: tuple[str, ...] = ()


def settings_from_config(cfg, **extra) -> LoopSettings:
    """LoopSettings from a command config with the usual sections (schedule, optim, checkpoint,
    validation, debug, and top-level device/threads); `extra` sets the command's own fields."""
    sc, ck = cfg.schedule, cfg.checkpoint
    return LoopSettings(
        epochs=sc.epochs, seed=sc.seed, device=cfg.device, threads=cfg.threads, log_every=sc.log_every,
        max_nonfinite=sc.max_nonfinite, grad_clip=cfg.optim.grad_clip, amp=cfg.optim.amp,
        checkpoint_every_steps=ck.every_steps, checkpoint_every_epochs=ck.every_epochs, keep_last=ck.keep_last,
        validate_every_epochs=cfg.validation.every_epochs, nonfinite_steps=tuple(cfg.debug.nonfinite_steps),
        stop_after_steps=cfg.debug.stop_after_steps, **extra,
    )


@dataclass(frozen=True)
class LoopEnv:
    """What a task gets at set-up: where it runs and how to talk."""

    out: Path
    device: torch.device
    dist_info: DistInfo
    say: SayFn
    progress: ProgressFn = None
    resume_override: bool = False  # --resume-override: apply a changed config on resume (recorded)


@dataclass
class StepLoss:
    """One step's loss: `total` (scalar, with grad) is back-propagated; `parts` (unweighted,
    detached scalars) are logged as `loss_<name>` (averaged over ranks under DDP); `log` holds
    further per-step diagnostics (floats or scalar tensors, read only on logging steps)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)


class Task(Protocol):
    """What one training command trains. Methods are called in this order: `setup`, then
    `optimizer` (on the DDP-converted module), `load_state_dict` on resume, then per epoch
    `batches`/`loss` per step, `validate` (rank 0), `is_better`/`best_record`, `save_model`
    and `state_dict` at checkpoints, and `finish` (rank 0) when the run completes."""

    settings: LoopSettings
    config: Any  # the command's config dataclass: written to config.yaml and into checkpoints

    def setup(self, env: LoopEnv) -> nn.Module:
        """Build data and models; return the module holding every trained parameter (the loop
        wraps it in DDP; its `state_dict` is the "module" of the training state)."""

    @property
    def steps_per_epoch(self) -> int: ...

    def optimizer(self, module: nn.Module, *, total_steps: int):
        """(torch optimiser, LR scheduler stepped once per step) over `module`'s parameters."""

    def batches(self, epoch: int, *, first_step: int) -> Iterator[Any]:
        """This rank's remaining batches of `epoch` (after a resume: from the saved position);
        the i-th batch is used at step `first_step + i`."""

    def loss(self, module: nn.Module, batch: Any, *, step: int) -> StepLoss:
        """Forward `batch` through `module` (the DDP wrapper when distributed), under autocast."""

    def validate(self, epoch: int, *, step: int) -> dict:
        """Rank 0: validation metrics (flat str -> float) of the current model; {} when off.
        `epoch` is 0-based; -1 is the starting model (`LoopSettings.validate_at_start`)."""

    def is_better(self, metrics: dict, best: dict) -> bool:
        """Whether `metrics` beat the best so far (`best` is {} before the first)."""

    def best_record(self, metrics: dict, *, epoch: int, step: int) -> dict:
        """What metrics.json/"best" and the training state keep about a new best (1-based epoch)."""

    def save_model(self, path: Path, *, extra: dict, kind: ModelKind) -> None:
        """Write a model checkpoint other commands load (checkpoint: beside each training state;
        best: best.pt; final: what `finish` ships)."""

    def state_dict(self) -> dict:
        """Task state a resume needs beyond the module/optimiser (e.g. the sampler position)."""

    def load_state_dict(self, state: dict) -> int:
        """Restore `state_dict()` output; return the 0-based epoch to continue from. Refuse
        (OcctoolError) a state this task cannot continue (e.g. other training data)."""

    def finish(self, run: "RunState") -> tuple[Optional[Path], dict]:
        """Rank 0, after the last epoch: ship the model and return (its path or None, metrics
        for metrics.json). The loop adds `wall_time_s` and writes metrics.json."""
