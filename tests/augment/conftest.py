"""Fixtures of the augment tests: a synthetic face-like image (no shared data needed)."""

from __future__ import annotations

import numpy as np
import pytest


def synthetic_face(size: int = 112, seed: int = 0) -> np.ndarray:
    """A textured image (gradients + noise): every occluder must change it where it covers it."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.stack([xs / size * 200 + 30, ys / size * 180 + 40, (xs + ys) / (2 * size) * 150 + 60], axis=2)
    img += rng.normal(0, 12, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def face() -> np.ndarray:
    return synthetic_face()
