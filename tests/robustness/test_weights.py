"""Defect 11: pickled weights are refused with our own line (never torch's advice text); and
safetensors is a dependency that loads."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from occtool.cli.app import run
from occtool.errors import CheckpointError
from occtool.models.weights import read_state_dict, torch_load_safe
from tests.robustness.conftest import one_error_line


class Thing:  # a Python object inside a pickle
    pass


@pytest.mark.parametrize("kind", ["class", "os.system"])
def test_pickled_objects_are_refused_with_our_line(tmp_path, kind):
    path = tmp_path / "w.pt"
    if kind == "class":
        torch.save({"a": Thing()}, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump({"a": os.system}, fh, protocol=2)
    with pytest.raises(CheckpointError) as info:
        torch_load_safe(path)
    msg = str(info.value)
    assert "holds pickled Python objects" in msg and "was not loaded" in msg
    assert "Re-running" not in msg and "weights_only set to False" not in msg and "False" not in msg


def test_pickled_checkpoint_through_the_cli(tmp_path, capsys):
    path = tmp_path / "model.pt"
    with open(path, "wb") as fh:  # the case whose torch text was cut at "Re-running torch.load ..."
        pickle.dump({"a": os.system}, fh, protocol=2)
    tree = tmp_path / "t"
    rc = run(["eval-gallery", "--gallery-root", str(tree), "--probe-root", str(tree), "--checkpoint", str(path),
              "--no-cache", "--out", str(tmp_path / "o")])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 1 and "holds pickled Python objects" in line and "Re-running" not in line


def test_safetensors_is_a_dependency():
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert any(d.replace(" ", "").startswith("safetensors>=") for d in meta["project"]["dependencies"])


def test_safetensors_loads(tmp_path):
    from safetensors.torch import save_file

    state = {"module.conv.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    save_file(state, str(tmp_path / "w.safetensors"))
    got = read_state_dict(tmp_path / "w.safetensors")
    assert list(got) == ["conv.weight"] and torch.equal(got["conv.weight"], state["module.conv.weight"])
