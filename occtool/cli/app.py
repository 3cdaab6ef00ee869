"""The Typer app and the one top-level error handler.

Each command lives in its own module under `occtool.cli` and is registered in COMMANDS as
"module:function"; modules are imported when the app is built (they import no torch).
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

import typer

from occtool import __version__

# (command name, "occtool.cli.<module>:<function>")
COMMANDS: list[tuple[str, str]] = [
    ("align", "occtool.cli.align:align"),
    ("augment", "occtool.cli.augment:augment"),
    ("eval-gallery", "occtool.cli.eval_gallery:eval_gallery"),
    ("finetune-contrastive", "occtool.cli.finetune_contrastive:finetune_contrastive"),
    ("make-protocol", "occtool.cli.make_protocol:make_protocol"),
    ("train", "occtool.cli.train:train"),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"occtool {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="occtool",
        help="Occlusion-aware face recognition: align, augment, train, evaluate.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        """occtool: occlusion-aware face recognition."""

    for name, target in COMMANDS:
        module, func = target.split(":")
        app.command(name)(getattr(importlib.import_module(module), func))
    return app


app = build_app()


def run(argv: Optional[list[str]] = None) -> int:
    """Run the CLI; our own errors become one line on stderr and exit code 1 (no traceback)."""
    from occtool.errors import OcctoolError

    try:
        app(args=argv, prog_name="occtool", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except OcctoolError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
