"""Fixtures of the fine-tuning tests: a synthetic identity tree and a tiny fine-tune config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.conftest import make_tree


@pytest.fixture(scope="session")
def ft_tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("ft") / "tree", identities=10, per_identity=3, seed=1)


def tiny_sets(tree: Path, **extra) -> list[str]:
    """--set overrides of a tiny CPU run: 2 epochs x 2 steps of 2 people x 2 views, 3 held out."""
    base = {
        "data.train_root": str(tree), "data.p": 2, "data.k": 2, "schedule.epochs": 2, "schedule.steps_per_epoch": 2,
        "validation.holdout_identities": 3, "validation.probes_per_identity": 2, "threads": 1, "device": "cpu",
        "degrade.weights.occlusion": 0.0,  # MaskTheFace templates live in ../shared; low_res needs nothing
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
