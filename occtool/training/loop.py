"""`train(config, *, out_dir, progress=None, resume=None) -> TrainResult`: the training loop.

`run_loop(task, ...)` is the loop every training command shares (`occtool.training.task` says
what a task provides); `train` runs it on the multi-task training of `occtool train`
(`occtool.training.multitask.MultiTaskTraining`).

Outputs in `out_dir` (rank 0 writes): config.yaml, metrics.csv (a row every `log_every` steps
and one per validation), metrics.json (final validation and test figures), loss_curves.png,
validation_curves.png, checkpoints/ (state-<step>.pt + model-<step>.pt + latest.json),
best.pt (when the task keeps a best epoch) and model.pt (the final model checkpoint,
`occtool.models.load_model_checkpoint` reads it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from occtool.io import atomic_write_json
from occtool.progress import ProgressFn
from occtool.training import steps
from occtool.training.config import TrainConfig
from occtool.training.distributed import barrier, cleanup_distributed, init_distributed
from occtool.training.multitask import (  # noqa: F401 - the pieces of `occtool train`, importable from here too
    MultiTaskTraining,
    build_models,
    build_optimizer,
    loss_weights,
    lr_lambda,
    run_test,
)
from occtool.training.run_state import RunState
from occtool.training.task import EpochHook, LoopEnv, Task

LogFn = Optional[Callable[[str], None]]


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    epochs: int
    model_path: Path | None
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    nonfinite_steps: int = 0
    wall_time_s: float = 0.0
    interrupted: bool = False


def train(
    config: TrainConfig,
    *,
    out_dir: str | Path,
    progress: ProgressFn = None,
    resume: str | Path | bool | None = None,
    log: LogFn = None,
    epoch_hooks: Sequence[EpochHook] = (),
) -> TrainResult:
    """Train per `config`, writing into `out_dir` (see the module doc). `resume`: True (the
    newest state in out_dir), a run folder or a state file; the run then continues exactly.
    `epoch_hooks`: callables (run_state, epoch_metrics) run on rank 0 at each epoch end."""
    return run_loop(MultiTaskTraining(config), out_dir=out_dir, progress=progress, resume=resume, log=log,
                    epoch_hooks=epoch_hooks)


def run_loop(
    task: Task,
    *,
    out_dir: str | Path,
    progress: ProgressFn = None,
    resume: str | Path | bool | None = None,
    log: LogFn = None,
    epoch_hooks: Sequence[EpochHook] = (),
) -> TrainResult:
    """Run `task` to the end (or to `stop_after_steps`), resuming from a training state if asked."""
    from occtool.device import resolve_device

    t_start = time.time()
    device = resolve_device(task.settings.device)
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    if task.settings.threads:
        torch.set_num_threads(task.settings.threads)
    env = LoopEnv(out=Path(out_dir), device=device, dist_info=dist_info, say=log or (lambda _m: None),
                  progress=progress)
    try:
        return _run(task, env, resume, epoch_hooks, t_start)
    finally:
        cleanup_distributed(dist_info)


def _run(task: Task, env: LoopEnv, resume, hooks: Sequence[EpochHook], t_start: float) -> TrainResult:
    run, state = steps.setup(task, env, resume)
    run.t_start = t_start
    if state is not None:
        steps.resume_from(run, task, state, env.say)
    elif task.settings.validate_at_start:
        if run.is_main:
            steps.validate(run, task, -1)
        barrier(run.dist_info)
    first_epoch = run.epoch
    for run.epoch in range(first_epoch, task.settings.epochs):
        steps.train_epoch(run, task, env)
        if run.interrupted:
            break
        steps.end_epoch(run, task, hooks)
    return _finish(run, task)


def _finish(run: RunState, task: Task) -> TrainResult:
    """Rank 0: logs; unless interrupted, the task's final model and metrics.json."""
    model_path, metrics = None, {}
    if run.is_main:
        steps.write_logs(run)
        if not run.interrupted:
            model_path, metrics = task.finish(run)
            metrics["wall_time_s"] = round(run.elapsed_s(), 1)
            atomic_write_json(run.out / "metrics.json", metrics)
    barrier(run.dist_info)
    return TrainResult(out_dir=run.out, steps=run.step, epochs=task.settings.epochs, model_path=model_path,
                       metrics=metrics, history=run.history, nonfinite_steps=run.nonfinite_total,
                       wall_time_s=run.elapsed_s(), interrupted=run.interrupted)
