"""The steps of the training loop, each on a `RunState` and a `Task` (see `occtool.training.loop`)."""

from __future__ import annotations

import csv
import io
import math
import random
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from occtool.config import to_dict, to_yaml
from occtool.errors import TrainingError
from occtool.io import atomic_write_text
from occtool.progress import report
from occtool.training import state as st
from occtool.training.distributed import DistInfo, barrier, convert_batchnorm
from occtool.training.run_state import RunState
from occtool.training.task import EpochHook, LoopEnv, StepLoss, Task


def set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def setup(task: Task, env: LoopEnv, resume) -> tuple[RunState, Optional[dict]]:
    """Config, seeds, the task's models and data, DDP, optimiser and scaler; the training state
    to resume from (loaded before anything is written, applied by `resume_from`)."""
    s = task.settings
    state = st.load_state(st.find_state(resume, env.out)) if resume else None
    if env.dist_info.is_main:
        env.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(env.out / "config.yaml", to_yaml(task.config))
    set_seeds(s.seed)
    module = task.setup(env)
    wrapped = module
    if env.dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        module = convert_batchnorm(module, env.device)
        module.train()
        wrapped = DDP(module, device_ids=[env.device.index] if env.device.type == "cuda" else None,
                      find_unused_parameters=True, broadcast_buffers=False)
    steps_per_epoch = task.steps_per_epoch
    optimizer, scheduler = task.optimizer(module, total_steps=s.epochs * steps_per_epoch)
    amp_on = s.amp and env.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp_on)
    run = RunState(out=env.out, device=env.device, dist_info=env.dist_info, module=wrapped, optimizer=optimizer,
                   scheduler=scheduler, scaler=scaler, amp_on=amp_on, epochs=s.epochs, steps_per_epoch=steps_per_epoch)
    return run, state


def resume_from(run: RunState, task: Task, state: dict, say) -> None:
    run.load(state)
    run.epoch = task.load_state_dict(state)
    st.set_rng_state(state["rng"])
    say(f"resumed from step {run.step} (epoch {run.epoch + 1})")


def train_epoch(run: RunState, task: Task, env: LoopEnv) -> None:
    """The remaining steps of `run.epoch`; sets `run.interrupted` at `stop_after_steps`."""
    s = task.settings
    run.module.train()
    for batch in task.batches(run.epoch, first_step=run.step):
        ok, grad_norm, loss = train_step(run, task, batch)
        guard_nonfinite(run, task, ok, env.say)
        run.scheduler.step()
        run.step += 1
        if run.step % max(1, s.log_every) == 0 or run.step == 1:
            log_step(run, loss, grad_norm, ok, s.log_write_every_s)
        report(env.progress, run.step, run.total_steps)
        stop = s.stop_after_steps is not None and run.total_steps > run.step >= s.stop_after_steps
        if stop or (s.checkpoint_every_steps and run.step % s.checkpoint_every_steps == 0):
            save_checkpoint(run, task)
        if stop:
            run.interrupted = True
            return


def train_step(run: RunState, task: Task, batch: Any) -> tuple[bool, float, StepLoss]:
    """One update under autocast with gradient scaling and clipping; (finite, grad norm, loss):
    a non-finite loss (on any rank) or gradient skips the update."""
    s = task.settings
    with torch.autocast(device_type=run.device.type, dtype=torch.float16, enabled=run.amp_on):
        loss = task.loss(run.module, batch, step=run.step)
    total = loss.total
    if run.step in s.nonfinite_steps:
        total = total * float("nan")
    finite = torch.isfinite(total.detach()).float()
    if run.dist_info.enabled:
        import torch.distributed as dist

        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    run.optimizer.zero_grad(set_to_none=True)
    ok = bool(finite.item() > 0)
    grad_norm = float("nan")
    if ok:
        run.scaler.scale(total).backward()
        if s.grad_clip:
            run.scaler.unscale_(run.optimizer)
            params = [p for g in run.optimizer.param_groups for p in g["params"]]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, s.grad_clip))
            if not math.isfinite(grad_norm) and not run.amp_on:
                ok = False  # non-finite gradients: skip the update (AMP: the scaler skips it)
        if ok:
            run.scaler.step(run.optimizer)
            run.scaler.update()
    return ok, grad_norm, loss


def guard_nonfinite(run: RunState, task: Task, ok: bool, say) -> None:
    """Count non-finite steps; stop the run after `max_nonfinite` in a row (logs written first)."""
    if ok:
        run.nonfinite_run = 0
        return
    s = task.settings
    run.optimizer.zero_grad(set_to_none=True)
    run.nonfinite_run += 1
    run.nonfinite_total += 1
    say(f"step {run.step + 1}: non-finite loss or gradient, update skipped ({run.nonfinite_run} in a row)")
    if run.nonfinite_run >= s.max_nonfinite:
        write_logs(run)
        raise TrainingError(
            f"training stopped at step {run.step + 1}: {run.nonfinite_run} non-finite losses/gradients in a row "
            f"(schedule.max_nonfinite={s.max_nonfinite}); lower optim.lr or check the data"
        )


def log_step(run: RunState, loss: StepLoss, grad_norm: float, ok: bool, write_every_s: float) -> None:
    row = {"kind": "step", "epoch": run.epoch + 1, "step": run.step, "lr": run.optimizer.param_groups[0]["lr"],
           **global_losses(loss, run.dist_info), **{k: float(v) for k, v in loss.log.items()},
           "grad_norm": grad_norm, "skipped": int(not ok), "time_s": round(run.elapsed_s(), 2)}
    if not ok:
        row["loss"] = float("nan")
    run.history.append(row)
    if run.is_main and time.time() - run.t_log > write_every_s:
        write_logs(run)
        run.t_log = time.time()


def global_losses(loss: StepLoss, info: DistInfo) -> dict:
    """The logged losses: those of the global batch (each rank's parts are scaled so that their
    mean over ranks is the global value, as DDP's gradient averaging uses them)."""
    names = list(loss.parts)
    if not info.enabled:
        return {"loss": float(loss.total.detach()), **{f"loss_{n}": float(loss.parts[n]) for n in names}}
    import torch.distributed as dist

    vec = torch.stack([loss.total.detach().float()] + [loss.parts[n].detach().float() for n in names])
    dist.all_reduce(vec)
    vec = vec / info.world_size
    return {"loss": float(vec[0]), **{f"loss_{n}": float(v) for n, v in zip(names, vec[1:])}}


def end_epoch(run: RunState, task: Task, hooks: Sequence[EpochHook]) -> None:
    """Validation (when due) with best tracking and the epoch hooks (rank 0), logs, checkpoint."""
    s = task.settings
    epoch = run.epoch
    if (epoch + 1) % max(1, s.validate_every_epochs) == 0 or epoch + 1 == s.epochs:
        if run.is_main:
            metrics = validate(run, task, epoch)
            for hook in hooks:
                hook(run, metrics)
        barrier(run.dist_info)
    elif run.is_main:
        for hook in hooks:
            hook(run, {})
    if run.is_main:
        write_logs(run)
    if s.checkpoint_every_epochs and (epoch + 1) % s.checkpoint_every_epochs == 0:
        save_checkpoint(run, task)


def validate(run: RunState, task: Task, epoch: int) -> dict:
    """Rank 0: the task's validation as an "epoch" history row; a new best is kept in best.pt."""
    metrics = task.validate(epoch, step=run.step)
    if not metrics:
        return {}
    run.last_val = metrics
    run.history.append({"kind": "epoch", "epoch": epoch + 1, "step": run.step, **metrics})
    if task.is_better(metrics, run.best):
        run.best.clear()
        run.best.update(task.best_record(metrics, epoch=epoch + 1, step=run.step))
        task.save_model(run.out / "best.pt", extra={"step": run.step, "validation": metrics}, kind="best")
    return metrics


def save_checkpoint(run: RunState, task: Task) -> None:
    """The one checkpoint: model-<step>.pt (task.save_model) + state-<step>.pt (rank 0)."""
    if not run.is_main:
        return
    ck = st.checkpoints_dir(run.out)
    ck.mkdir(parents=True, exist_ok=True)
    task.save_model(ck / f"model-{run.step:08d}.pt", extra={"step": run.step}, kind="checkpoint")
    st.save_state(run.out, {
        "step": run.step,
        "module": run.module_state(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.amp_on else {},
        **task.state_dict(),
        "rng": st.rng_state(),
        "nonfinite_run": run.nonfinite_run,
        "nonfinite_total": run.nonfinite_total,
        "history": run.history,
        "best": run.best,
        "config": to_dict(task.config),
    }, step=run.step, keep_last=task.settings.keep_last)


def write_logs(run: RunState) -> None:
    """metrics.csv and the loss/validation curves (rank 0)."""
    from occtool.training.plots import plot_losses, plot_validation

    if run.is_main:
        write_csv(run.out / "metrics.csv", run.history)
        plot_losses(run.history, run.out / "loss_curves.png")
        plot_validation(run.history, run.out / "validation_curves.png")


def write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())
