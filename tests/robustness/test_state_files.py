"""latest.json naming a file outside the run's checkpoints/ is refused, not followed."""

from __future__ import annotations

import json

import pytest

from occtool.errors import CheckpointError
from occtool.training.state import find_state


@pytest.mark.parametrize("name", ["../../elsewhere/state-00000009.pt", "/tmp/state-00000009.pt"])
def test_latest_json_outside_the_run_is_refused(tmp_path, name):
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "state-00000002.pt").write_bytes(b"x")
    outside = (ck / name).resolve()
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_bytes(b"x")
    (ck / "latest.json").write_text(json.dumps({"state": name, "step": 9}))
    with pytest.raises(CheckpointError, match="outside"):
        find_state(True, tmp_path / "run")


def test_latest_json_inside_is_followed(tmp_path):
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    for step in (2, 4):
        (ck / f"state-{step:08d}.pt").write_bytes(b"x")
    (ck / "latest.json").write_text(json.dumps({"state": "state-00000002.pt", "step": 2}))
    assert find_state(True, tmp_path / "run") == ck / "state-00000002.pt"
