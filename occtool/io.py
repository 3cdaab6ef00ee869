"""Output folders and atomic writes (temp file in the same folder + os.replace)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from occtool.errors import OutputExistsError


def prepare_out_dir(out: str | Path, *, force: bool = False) -> Path:
    """Create `out`; refuse a non-empty existing folder unless force (files are then overwritten)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"--out {out} is not empty; pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save(path: str | Path, save_fn) -> Path:
    """Call save_fn(tmp_path) (e.g. torch.save, cv2.imwrite, fig.savefig) then rename atomically.

    The temp name keeps the real suffix so writers that pick a format by extension work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        save_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_config(out: str | Path, cfg: Any) -> Path:
    """Write the final config of a run as `<out>/config.yaml`."""
    from occtool.config import to_yaml

    return atomic_write_text(Path(out) / "config.yaml", to_yaml(cfg))

