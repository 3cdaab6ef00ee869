"""Shared fixtures: the read-only ../shared folder (skip with a reason when absent), seeds."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from occtool.resources import shared_root

SHARED = shared_root()


def load_benchmark(name: str):
    """benchmarks/<name>.py imported as a module (the scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def shared_or_skip(*parts: str) -> Path:
    """Path inside ../shared, or skip the test saying what is missing."""
    if SHARED is None:
        pytest.skip("../shared is absent (set OCCTOOL_SHARED): real-data test skipped")
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: real-data test skipped")
    return path


@pytest.fixture
def lfw_aligned() -> Path:
    """../shared/data/lfw_aligned112 (images/ and pairs.txt)."""
    return shared_or_skip("data", "lfw_aligned112")


@pytest.fixture
def mobilefacenet_dir() -> Path:
    return shared_or_skip("weights", "mobilefacenet")


@pytest.fixture
def masktheface_dir() -> Path:
    return shared_or_skip("occluders", "masktheface")


@pytest.fixture(autouse=True)
def _fixed_seeds():
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
        torch.set_num_threads(1)  # 2 xdist workers on 2 cores: more threads only thrash
    except ImportError:  # pragma: no cover
        pass
    yield


@pytest.fixture
def tiny_tree(tmp_path: Path, lfw_aligned: Path) -> Path:
    """A tiny identity tree (3 people x 2-3 real aligned LFW images), symlinked, in tmp."""
    src = lfw_aligned / "images"
    root = tmp_path / "tiny"
    for person in ("Aaron_Peirsol", "Abdullah_Gul", "Adrien_Brody"):
        (root / person).mkdir(parents=True)
        for img in sorted((src / person).iterdir())[:3]:
            (root / person / img.name).symlink_to(img)
    return root
