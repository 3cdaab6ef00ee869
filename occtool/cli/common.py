"""Helpers shared by the CLI commands: stderr console, progress bars, config loading."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

err_console = Console(stderr=True)
out_console = Console()

# Reusable option declarations so every command spells them the same way.
ConfigOption = typer.Option(None, "--config", help="YAML config file (keys of the command's config).")
SetOption = typer.Option(None, "--set", help="Config override key=value (repeatable; dotted keys for sections).")
DeviceOption = typer.Option("auto", "--device", help="auto, cpu or cuda[:N].")
ForceOption = typer.Option(False, "--force", help="Overwrite a non-empty --out folder.")


@contextmanager
def progress_bar(description: str) -> Iterator:
    """Yield a `progress(done, total)` callback drawing a rich bar on stderr."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def build_config(cls: type, config: Optional[Path], sets: Optional[list[str]], options: dict[str, Any]):
    """defaults <- YAML (--config) <- explicit CLI options (non-None) <- --set overrides."""
    from occtool.config import load_config, parse_override

    overrides = {k: v for k, v in options.items() if v is not None}
    overrides.update(dict(parse_override(s) for s in (sets or [])))
    return load_config(cls, yaml_path=config, overrides=overrides)


def info(message: str) -> None:
    err_console.print(message, highlight=False)


def run_training(command: str, out: Path, run, *, force: bool, resume: bool, status=None):
    """Run a training command (`run(progress=, resume=, log=)` -> result with `interrupted`) in
    its output folder. Under torchrun every process calls this; rank 0 owns the folder, the
    progress bar and the log. `status(result)`: the folder's final status when not plain complete."""
    import os

    from occtool.io import output_folder

    rank = int(os.environ.get("RANK", "0"))

    def log(msg: str) -> None:
        if rank == 0:
            info(msg)

    if rank != 0:
        return run(progress=None, resume=True if resume else None, log=log), False
    hint = f"resume with: occtool {command} --out {out} --resume"
    with output_folder(out, command=command, force=force, resume=resume, resume_hint=hint) as folder, \
            progress_bar(command) as progress:
        result = run(progress=progress, resume=True if resume else None, log=log)
        if result.interrupted:
            folder.final_status = "stopped early (resume with --resume)"
        elif status is not None and status(result):
            folder.final_status = status(result)
    if result.interrupted:
        info(f"stopped after step {result.steps} (resume with --resume)")
    return result, True
