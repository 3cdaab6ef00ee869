"""`--device auto|cpu|cuda` resolution."""

from __future__ import annotations

import torch

from occtool.errors import OcctoolError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise OcctoolError(f"--device {name}: CUDA is not available on this machine")
    if name == "cpu" or name.startswith("cuda"):
        return torch.device(name)
    raise OcctoolError(f"--device: expected auto, cpu or cuda[:N], got {name!r}")
