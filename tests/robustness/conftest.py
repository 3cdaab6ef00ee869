"""Fixtures of the robustness suite: small synthetic identity trees (no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_tree(root: Path, people: dict[str, int], *, size: int = 112, seed: int = 0) -> Path:
    """root/<person>/<person>_000k.png: textured images, distinct per file."""
    rng = np.random.default_rng(seed)
    for person, n in people.items():
        (root / person).mkdir(parents=True, exist_ok=True)
        for k in range(1, n + 1):
            img = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / person / f"{person}_{k:04d}.png")
    return root


@pytest.fixture
def synth_tree(tmp_path: Path) -> Path:
    """3 people x 2 images of 112x112 noise."""
    return write_tree(tmp_path / "tree", {"Ann_A": 2, "Bob_B": 2, "Cid_C": 2})


def one_error_line(err: str) -> str:
    """The stderr of a user error: one line starting with 'error: ' (besides progress bars and
    notes), no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("error") or "Traceback" in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]
