"""Default weight locations (no torch import, so the CLI can check paths cheaply)."""

from __future__ import annotations

from pathlib import Path

RETINAFACE_PARTS = ("weights", "retinaface_mnet025", "mobilenet0.25_Final.pth")


def default_weights() -> Path:
    """../shared/weights/retinaface_mnet025/mobilenet0.25_Final.pth (DataError when absent)."""
    from occtool.resources import shared_path

    return shared_path(*RETINAFACE_PARTS)


def resolve_weights(weights: str | Path | None) -> Path:
    """The given path, or the shared default; CheckpointError when the file is missing."""
    from occtool.errors import CheckpointError

    path = Path(weights) if weights is not None else default_weights()
    if not path.is_file():
        raise CheckpointError(f"RetinaFace weights not found: {path}")
    return path
