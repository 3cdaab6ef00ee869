"""Every `occtool ...` command the README shows (fenced blocks, inline commands and the
section synopses; a bare `occtool align` in prose names a command and is skipped) and every one in examples/*.sh parses: the command exists, every flag exists, every
required option is there. A copied command fails only on the user's own paths."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
        found += [ln.strip() for ln in block.replace("\\\n", " ").splitlines() if ln.strip().startswith("occtool ")]
    for line in text.splitlines():
        spans = [s for s in re.findall(r"`([^`]+)`", line) if s.startswith("occtool ")]
        # `occtool align` alone names a command; `occtool classify train|export` lists subcommands
        found += [s for s in spans if len(s.split()) > 2 and not (("|" in s.split()[2]) and "--" not in s)]
    return found


def _example_commands() -> list[str]:
    found = []
    for script in sorted((REPO / "examples").glob("*.sh")):
        text = script.read_text(encoding="utf-8").replace("\\\n", " ")
        found += [ln.strip() for ln in text.splitlines() if ln.strip().startswith("occtool ")]
    return found


def _argv(command: str) -> list[str]:
    command = re.sub(r"\$\{?(\w+)\}?", r"/x/\1", command)  # shell variables -> placeholder paths
    command = re.sub(r"\s\[[^\]]*\]", "", command)  # [optional parts] of a synopsis
    return [t for t in shlex.split(command, comments=True) if t not in ("...", "occtool")]


@pytest.fixture
def parse(monkeypatch, capsys):
    """parse(argv) -> (exit code, stderr) of the real CLI with every command body a no-op: the
    command, its flags and required options are checked exactly as a user's run would be."""
    import functools
    import importlib

    import occtool.cli.app as app_mod

    import typer

    for _, target in app_mod.COMMANDS:
        module, func = target.split(":")
        mod = importlib.import_module(module)
        obj = getattr(mod, func)
        if isinstance(obj, typer.Typer):  # a command with subcommands: each subcommand a no-op
            for info in obj.registered_commands:
                monkeypatch.setattr(info, "callback", functools.wraps(info.callback)(lambda *a, **k: None))
        else:
            monkeypatch.setattr(mod, func, functools.wraps(obj)(lambda *a, **k: None))
    test_app = app_mod.build_app()

    def _parse(argv: list[str]) -> tuple[int, str]:
        try:
            test_app(args=argv, prog_name="occtool", standalone_mode=True)
        except SystemExit as exc:
            return (exc.code or 0), capsys.readouterr().err
        return 0, capsys.readouterr().err

    return _parse


COMMANDS = _readme_commands() + _example_commands()


def test_the_readme_shows_commands():
    assert len(_readme_commands()) >= 5 and len(_example_commands()) >= 5


@pytest.mark.parametrize("command", COMMANDS)
def test_command_parses(command, parse):
    code, err = parse(_argv(command))
    assert code == 0, f"{command!r}: {err}"


def test_a_broken_command_is_caught(parse):
    code, err = parse(_argv("occtool eval-gallery --pairs p.txt --root r --backbone mobilefacenet"))
    assert code == 2 and "--out" in err
