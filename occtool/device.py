"""`--device auto|cpu|cuda|cuda:N` resolution (auto: CUDA when available, else CPU)."""

from __future__ import annotations

import torch

from occtool.config import check_device
from occtool.errors import ConfigError


def resolve_device(name: str = "auto", *, key: str = "device") -> torch.device:
    """The torch device for `name`; ConfigError for a malformed name or CUDA that is not there."""
    check_device(key, name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{key} {name}: CUDA is not available on this machine")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"{key} {name}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0..)")
    return torch.device(name)
