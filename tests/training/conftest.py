"""A synthetic identity tree (no ../shared needed): each person a smooth random pattern, each
image that pattern shifted a little, with noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.yaml"


def make_tree(root: Path, *, identities: int = 8, per_identity: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(identities):
        base = rng.random((8, 8, 3))
        base = np.kron(base, np.ones((16, 16, 1)))[:120, :120]  # 128 -> crop 120
        (root / f"person_{i:02d}").mkdir(parents=True, exist_ok=True)
        for j in range(per_identity):
            dy, dx = rng.integers(0, 8, size=2)
            img = base[dy:dy + 112, dx:dx + 112] * 200 + rng.normal(0, 12, (112, 112, 3)) + 25
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"person_{i:02d}" / f"img_{j}.png")
    return root


@pytest.fixture(scope="session")
def synthetic_tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("synthetic") / "tree")


@pytest.fixture(scope="session")
def lfw_six(tmp_path_factory) -> Path:
    """6 real LFW people x 3 aligned images (symlinks), or skip when ../shared is absent."""
    from tests.conftest import shared_or_skip

    src = shared_or_skip("data", "lfw_aligned112", "images")
    shared_or_skip("weights", "mobilefacenet", "mobilefacenet.pt")
    root = tmp_path_factory.mktemp("lfw_six") / "tree"
    people = [p for p in sorted(src.iterdir()) if p.is_dir() and len(list(p.iterdir())) >= 3][:6]
    for person in people:
        (root / person.name).mkdir(parents=True)
        for img in sorted(person.iterdir())[:3]:
            (root / person.name / img.name).symlink_to(img)
    return root
