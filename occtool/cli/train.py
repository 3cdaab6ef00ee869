"""`occtool train`: multi-task training (AdaFace + QAConv + occlusion). A thin adapter over
`occtool.training.train` (no torch at import time).

Under torchrun (WORLD_SIZE > 1) every process runs this same command; rank 0 writes the outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from occtool.cli.common import ConfigOption, DeviceOption, ForceOption, SetOption, info, run_training


def train(
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, model.pt, metrics.csv/json, curves, config.yaml."),
    config: Optional[Path] = ConfigOption,
    set_: Optional[list[str]] = SetOption,
    data: Optional[Path] = typer.Option(None, "--data", help="Training identity tree (data.train_root)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Backbone name (model.backbone): mobilefacenet, ir18, ir34, ir50, ir100."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Backbone weights file, 'default' or 'none' (model.weights)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="schedule.epochs."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest training state, exactly (a changed config is refused)."),
    resume_override: bool = typer.Option(False, "--resume-override", help="With --resume: apply the changed config (--set...) from the saved step on; recorded in metrics.json."),
    device: str = DeviceOption,
    force: bool = ForceOption,
) -> None:
    """Train the occlusion head, QAConv and/or the backbone; validate every epoch."""
    from occtool.cli.common import build_config
    from occtool.errors import ConfigError
    from occtool.training.config import TrainConfig

    if resume_override and not resume:
        raise ConfigError("--resume-override goes with --resume")
    if resume and force:
        raise ConfigError("--resume continues the run in --out; --force would overwrite it: choose one")
    if resume and not out.is_dir():
        raise ConfigError(f"--resume: run folder not found: {out}")
    if resume and config is None and (out / "config.yaml").is_file():
        config = out / "config.yaml"  # the run's own config, --set still applies on top
    if config is None and not resume:
        info("no --config given: using the defaults (see configs/ for recipes)")
    options = {
        "data.train_root": str(data) if data is not None else None,
        "model.backbone": backbone,
        "model.weights": weights,
        "schedule.epochs": epochs,
        "device": device if device != "auto" else None,
    }
    cfg = build_config(TrainConfig, config, set_, options)
    if not cfg.data.train_root:
        raise ConfigError("no training data: give --data DIR or data.train_root in the config")
    from occtool.training.data import resolve_root

    resolve_root(cfg.data.train_root, "data.train_root")  # a missing folder fails before anything is written
    from occtool.training import train as run_train

    result, main = run_training("train", out, lambda **kw: run_train(cfg, out_dir=out, resume_override=resume_override, **kw),
                                force=force, resume=resume)
    if main and not result.interrupted:
        info(f"wrote {out}/model.pt, metrics.json, metrics.csv and curves ({result.steps} steps, "
             f"{result.wall_time_s / 60:.1f} min)")
