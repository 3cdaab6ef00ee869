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

# (command name, "occtool.cli.<module>:<function>"); a typer.Typer object becomes a sub-app
# with its own subcommands (`occtool <name> <subcommand>`).
COMMANDS: list[tuple[str, str]] = [
    ("align", "occtool.cli.align:align"),
    ("augment", "occtool.cli.augment:augment"),
    ("classify", "occtool.cli.classify:app"),
    ("eval-gallery", "occtool.cli.eval_gallery:eval_gallery"),
    ("export", "occtool.cli.export:export"),
    ("finetune-contrastive", "occtool.cli.finetune_contrastive:finetune_contrastive"),
    ("make-protocol", "occtool.cli.make_protocol:make_protocol"),
    ("train", "occtool.cli.train:train"),
    ("visualize-occlusion", "occtool.cli.visualize_occlusion:app"),
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
        target_obj = getattr(importlib.import_module(module), func)
        if isinstance(target_obj, typer.Typer):
            app.add_typer(target_obj, name=name)
        else:
            app.command(name)(target_obj)
    return app


app = build_app()


def run(argv: Optional[list[str]] = None) -> int:
    """Run the CLI; our own errors become one line on stderr and exit code 1 (no traceback)."""
    from occtool.errors import OcctoolError
    from occtool.io import set_note_sink, take_interrupted

    set_note_sink(lambda msg: typer.echo(f"note: {msg}", err=True))
    take_interrupted()  # forget an earlier run's (in-process callers, tests)
    try:
        app(args=argv, prog_name="occtool", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        code = code if isinstance(code, int) else (0 if code is None else 1)
    except OcctoolError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:  # typer turns it into exit 130 itself; kept for other callers
        code = 130
    else:
        code = 0
    finally:
        set_note_sink(None)
    if code == 130:
        _say_interrupted(argv)
    return code


def _say_interrupted(argv: Optional[list[str]]) -> None:
    """One line: what was interrupted and how to go on (the output folder's words when one was open)."""
    from occtool.io import take_interrupted

    what = take_interrupted()
    if what is None:
        args = sys.argv[1:] if argv is None else argv
        command = next((a for a in args if not a.startswith("-")), "")
        what = f"occtool {command}".rstrip()
    typer.echo(f"interrupted: {what}", err=True)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
