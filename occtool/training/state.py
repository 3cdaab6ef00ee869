"""Training state files: everything `--resume` needs to continue a run exactly.

`<out>/checkpoints/state-<step>.pt` (torch.save of plain data, loadable with
`torch.load(weights_only=True)`): the trainable module's state dict, optimiser, scheduler,
GradScaler, step, epoch, sampler position, the RNG states of python/numpy/torch(/cuda), the
NaN-guard counter and the config. Written atomically; `<out>/checkpoints/latest.json` names
the newest one, and only the last `keep_last` are kept. Beside each state, the model checkpoint
`model-<step>.pt` (occtool.models.save_model_checkpoint) is what other commands load.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from occtool.errors import CheckpointError
from occtool.io import atomic_save, atomic_write_json

STATE_FORMAT = "occtool-train-state"
STATE_VERSION = 1


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    out = {
        "python": _py_state_to_plain(random.getstate()),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"]).astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict) -> None:
    random.setstate(_py_state_from_plain(state["python"]))
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": n["bit_generator"],
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
        "has_gauss": int(n["has_gauss"]),
        "gauss": float(n["gauss"]),
    })
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_plain(st):
    version, internal, gauss = st
    return {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _py_state_from_plain(d):
    return (int(d["version"]), tuple(int(x) for x in d["internal"].tolist()), d["gauss"])


def checkpoints_dir(out: Path) -> Path:
    return Path(out) / "checkpoints"


def save_state(out: Path, state: dict, *, step: int, keep_last: int) -> Path:
    ck = checkpoints_dir(out)
    ck.mkdir(parents=True, exist_ok=True)
    path = ck / f"state-{step:08d}.pt"
    state = {"format": STATE_FORMAT, "format_version": STATE_VERSION, **state}
    atomic_save(path, lambda tmp: torch.save(state, tmp))
    atomic_write_json(ck / "latest.json", {"state": path.name, "step": step})
    _prune(ck, "state-", keep_last)
    _prune(ck, "model-", keep_last)
    return path


def _prune(ck: Path, prefix: str, keep_last: int) -> None:
    if keep_last <= 0:
        return
    files = sorted(ck.glob(f"{prefix}*.pt"))
    for old in files[:-keep_last]:
        old.unlink(missing_ok=True)


def find_state(resume: str | Path | bool, out: Path) -> Path:
    """`resume`: True (the newest state of `out`), a run folder, or a state file."""
    if resume is True:
        base = Path(out)
    else:
        base = Path(resume)
    if base.is_file():
        return base
    ck = checkpoints_dir(base) if (checkpoints_dir(base)).is_dir() else base
    latest = ck / "latest.json"
    if latest.is_file():
        import json

        try:
            name = json.loads(latest.read_text())["state"]
        except (ValueError, KeyError):
            name = None
        if name and (ck / name).resolve().parent != ck.resolve():
            raise CheckpointError(f"{latest} names {name!r}, which is outside {ck}: refused (edit or delete latest.json)")
        if name and (ck / name).is_file():
            return ck / name
    states = sorted(ck.glob("state-*.pt"))
    if not states:
        raise CheckpointError(f"--resume: no training state found under {base} (expected checkpoints/state-*.pt)")
    return states[-1]


def load_state(path: Path) -> dict:
    from occtool.models.weights import torch_load_safe

    state = torch_load_safe(path, what="training state")  # pickled objects: refused with our line
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not an occtool training state")
    if state.get("format_version") != STATE_VERSION:
        raise CheckpointError(f"{path}: training state version {state.get('format_version')} is not supported")
    return state
