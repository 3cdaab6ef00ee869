"""Reading weights files safely and loading them strictly, with clear errors.

`read_state_dict(path)`: torch files via `torch.load(weights_only=True)` (never unpickles arbitrary
objects), `.safetensors` via safetensors; unwraps {"state_dict": ...} / {"model": ...} containers
and occtool checkpoints, and strips `module.` / `model.` / `backbone.` / `net.` prefixes.
`load_strict(module, state, what=...)`: CheckpointError naming missing / unexpected keys and shape
mismatches (a few of each, with counts) instead of torch's long message.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from occtool.errors import CheckpointError

PREFIXES = ("module.", "model.", "backbone.", "net.")
# Keys a training checkpoint holds beside the backbone (classifier heads, necks): dropped when the
# backbone keys carry a prefix that sets them apart (e.g. AdaFace: "model.*" + "head.kernel").
SIDE_PREFIXES = ("head.", "neck.")
_SHOW = 5


def torch_load_safe(path: str | Path, *, map_location="cpu", what: str = "file"):
    """torch.load(weights_only=True) with CheckpointErrors for a missing or unreadable file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{what} is not a file: {path}")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # zip (torch >= 1.6) or legacy pickle
        raise CheckpointError(f"{path}: not a torch file (neither a torch zip archive nor a pickle)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(_refusal(path, str(exc))) from None
    except Exception as exc:  # noqa: BLE001 - any decoding failure is "not a torch file"
        raise CheckpointError(f"{path}: not a readable torch file ({type(exc).__name__}: {str(exc)[:200]})") from None


def _refusal(path: Path, message: str) -> str:
    """Our own line for torch's weights_only refusal (its text, cut anywhere, reads as advice to
    load the file unsafely): which Python object the pickle wanted, and that nothing was run."""
    found = re.search(r"GLOBAL\s+([\w.]+)", message)
    if found is None:
        return f"{path}: not a readable torch file (its pickle is damaged or holds more than tensors); it was not loaded"
    return (f"{path}: the file holds pickled Python objects ({found.group(1)}) and was not loaded: occtool reads "
            "only tensors (torch.load with weights_only=True). Use a state dict of tensors or a .safetensors file")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A backbone state dict from a weights file (torch or .safetensors), unwrapped and de-prefixed."""
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"weights file not found: {path}")
        try:
            from safetensors.torch import load_file
        except ImportError:  # pragma: no cover - depends on the environment
            raise CheckpointError(f"{path}: reading .safetensors needs the `safetensors` package (pip install safetensors)") from None
        try:
            obj = load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{path}: not a readable safetensors file ({str(exc)[:200]})") from None
    else:
        obj = torch_load_safe(path, what="weights file")
    return unwrap_state_dict(obj, source=str(path))


def unwrap_state_dict(obj, *, source: str = "weights") -> dict[str, torch.Tensor]:
    """Find the tensor mapping inside a checkpoint object and strip wrapper prefixes."""
    if isinstance(obj, Mapping) and obj.get("format") == "occtool":
        try:
            full = obj["model"]["state_dict"]
        except (KeyError, TypeError):
            raise CheckpointError(f"{source}: occtool checkpoint without model.state_dict") from None
        obj = {k[len("backbone."):]: v for k, v in full.items() if k.startswith("backbone.")}
    else:
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: expected a state dict (a mapping of names to tensors), got {_kind(obj)}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{source}: not a state dict: {len(bad)} entries are not tensors "
            f"(e.g. {bad[0]!r}: {_kind(obj[bad[0]])})"
        )
    return strip_prefixes(dict(obj))


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove `module.` / `model.` / `backbone.` / `net.` wrappers (repeatedly)."""
    changed = True
    while changed and state:
        changed = False
        for p in PREFIXES:
            inside = [k for k in state if k.startswith(p)]
            if not inside:
                continue
            rest = [k for k in state if not k.startswith(p)]
            if not rest or all(k.startswith(SIDE_PREFIXES) for k in rest):
                state = {k[len(p):]: state[k] for k in inside}
                changed = True
                break
    return state


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, what: str = "weights") -> None:
    """module.load_state_dict(state, strict=True) with a clear CheckpointError on any mismatch.

    BatchNorm `num_batches_tracked` counters absent from old checkpoints are not required.
    """
    expected = module.state_dict()
    state = dict(state)
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: model {tuple(expected[k].shape)}, file {tuple(state[k].shape)}"
        for k in expected
        if k in state and tuple(expected[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({_few(shapes)})")
        raise CheckpointError(f"{what} do not match the model: " + "; ".join(parts))
    for k, v in expected.items():  # fill absent BN counters
        if k not in state:
            state[k] = v
    module.load_state_dict(state, strict=True)


def _few(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (f", ... {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _kind(obj) -> str:
    if isinstance(obj, Mapping):
        return f"a mapping with keys {list(obj)[:_SHOW]}"
    return type(obj).__name__


__all__ = ["load_strict", "read_state_dict", "strip_prefixes", "torch_load_safe", "unwrap_state_dict"]
