"""`occtool finetune-contrastive`: contrastive fine-tuning of a recogniser so that degraded and
clean faces of one person meet; refuses (exit code 3, no model.pt) when no epoch beats the start.
A thin adapter over `occtool.finetune.finetune` (no torch at import time)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from occtool.cli.common import ConfigOption, DeviceOption, ForceOption, SetOption, info, run_training


def finetune_contrastive(
    out: Path = typer.Option(..., "--out", help="Run folder: model.pt (unless refused), report.md, metrics.json/csv, checkpoints."),
    config: Optional[Path] = ConfigOption,
    set_: Optional[list[str]] = SetOption,
    train_root: Optional[Path] = typer.Option(None, "--train-root", help="Training identity tree (data.train_root)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Backbone name (model.backbone)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Backbone weights file, 'default' or 'none' (model.weights)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Start from an occtool checkpoint (model.checkpoint)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per batch = P identities x K (sets data.p)."),
    images_per_subject: Optional[int] = typer.Option(None, "--images-per-subject", help="K views per identity (data.k)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="schedule.epochs."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (optim.lr, default 1e-5)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Contrastive temperature (loss.temperature, default 0.07)."),
    trainable: Optional[str] = typer.Option(None, "--trainable", help="all, output or last-N-stages (model.trainable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest training state, exactly."),
    device: str = DeviceOption,
    force: bool = ForceOption,
) -> None:
    """Fine-tune with a supervised contrastive loss on partly degraded views; validate on held-out
    people before training and every epoch; keep the best epoch or refuse (exit code 3)."""
    from occtool.cli.common import build_config
    from occtool.errors import ConfigError
    from occtool.finetune import REFUSED_EXIT_CODE, FinetuneConfig

    config = _checked_flags(out, config, resume=resume, force=force, weights=weights, checkpoint=checkpoint)
    options = {
        "data.train_root": str(train_root) if train_root is not None else None,
        "model.backbone": backbone, "model.weights": weights,
        "model.checkpoint": str(checkpoint) if checkpoint is not None else None,
        "data.k": images_per_subject, "schedule.epochs": epochs, "optim.lr": lr,
        "loss.temperature": temperature, "model.trainable": trainable,
        "device": device if device != "auto" else None,
    }
    cfg = _with_batch_size(build_config(FinetuneConfig, config, set_, options), batch_size)
    if not cfg.data.train_root:
        raise ConfigError("no training data: give --train-root DIR or data.train_root in the config")
    from occtool.training.data import resolve_root

    resolve_root(cfg.data.train_root, "data.train_root")  # fails before anything is written
    from occtool.finetune import finetune

    refused = "refused: no epoch beat the starting model (no model.pt)"
    result, main = run_training("finetune-contrastive", out, lambda **kw: finetune(cfg, out_dir=out, **kw),
                                force=force, resume=resume,
                                status=lambda r: refused if r.metrics.get("refused") else None)
    if not main or result.interrupted:
        return
    if result.metrics.get("refused"):
        info(f"refused: no epoch beat the starting model; see {out}/report.md (no model.pt written)")
        raise typer.Exit(REFUSED_EXIT_CODE)
    info(f"wrote {out}/model.pt (epoch {result.metrics.get('best', {}).get('epoch', '?')}), report.md, "
         f"metrics.json ({result.steps} steps, {result.wall_time_s / 60:.1f} min)")


def _checked_flags(out: Path, config: Optional[Path], *, resume: bool, force: bool, weights, checkpoint) -> Optional[Path]:
    """The flag combinations that cannot work; the config to read (the run's own on --resume)."""
    from occtool.errors import ConfigError

    if resume and force:
        raise ConfigError("--resume continues the run in --out; --force would overwrite it: choose one")
    if resume and not out.is_dir():
        raise ConfigError(f"--resume: run folder not found: {out}")
    if weights is not None and checkpoint is not None:
        raise ConfigError("give either --weights or --checkpoint, not both")
    if resume and config is None and (out / "config.yaml").is_file():
        return out / "config.yaml"
    return config


def _with_batch_size(cfg, batch_size: Optional[int]):
    """--batch-size B = P identities x K views: sets data.p = B / K (B a multiple of K, P >= 2)."""
    if batch_size is None:
        return cfg
    from occtool.errors import ConfigError

    if batch_size % cfg.data.k or batch_size // cfg.data.k < 2:
        raise ConfigError(f"--batch-size {batch_size} must be a multiple of --images-per-subject {cfg.data.k} "
                          "holding at least 2 identities")
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, p=batch_size // cfg.data.k))
