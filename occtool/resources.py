"""Where the shared data and weights live (`../shared` beside the repo, or $OCCTOOL_SHARED).

Nothing is downloaded: defaults point into that folder, and every command also takes explicit
paths for a user's own files.
"""

from __future__ import annotations

import os
from pathlib import Path

from occtool.errors import DataError


def shared_root() -> Path | None:
    """$OCCTOOL_SHARED, else `shared/` beside the source checkout, else ./../shared."""
    env = os.environ.get("OCCTOOL_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "shared", Path.cwd().parent / "shared"]
    for cand in candidates:
        if cand.is_dir():
            return cand
    return None


def shared_path(*parts: str) -> Path:
    """A path inside the shared folder; DataError saying how to point at it when missing."""
    root = shared_root()
    path = root.joinpath(*parts) if root else None
    if path is None or not path.exists():
        rel = "/".join(parts)
        raise DataError(f"{rel} not found: set OCCTOOL_SHARED to the folder holding it, or pass its path explicitly")
    return path
