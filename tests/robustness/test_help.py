"""--help at 80 columns cuts nothing (eval-gallery's --methods list was cut); a plain state dict
given as --checkpoint names --backbone/--weights."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from occtool.cli.app import COMMANDS, run
from tests.robustness.conftest import one_error_line


@pytest.mark.parametrize("command", [name for name, _ in COMMANDS])
def test_help_at_80_columns_cuts_nothing(command):
    env = {**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": "80"}
    proc = subprocess.run([sys.executable, "-m", "occtool.cli.app", command, "--help"], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "\u2026" not in proc.stdout, proc.stdout  # rich's ellipsis: a word was cut
    if command == "eval-gallery":
        for m in ("cosine_occ_matched", "qaconv_occ", "fused"):
            assert m in proc.stdout


def test_plain_weights_as_checkpoint_names_the_flags(tmp_path, capsys):
    from occtool.models import build_backbone

    path = tmp_path / "model-weights.pt"
    torch.save(build_backbone("mobilefacenet").state_dict(), path)
    rc = run(["eval-gallery", "--checkpoint", str(path), "--gallery-root", str(tmp_path),
              "--probe-root", str(tmp_path), "--out", str(tmp_path / "o")])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 1 and "--backbone" in line and f"--weights {path}" in line
