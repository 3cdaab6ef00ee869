"""Fixtures: a random (BatchNorm-calibrated) checkpoint and small synthetic face folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="package")
def checkpoint(tmp_path_factory) -> Path:
    from occtool.matching import QAConvMatcher
    from occtool.models import FaceModel, build_backbone, save_model_checkpoint

    torch.manual_seed(0)
    model = FaceModel(backbone=build_backbone("mobilefacenet"), hidden_channels=16, neck_channels=32)
    for m in model.modules():  # calibrated BatchNorms keep activations O(1) (bias b = raw(0) != 0)
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(torch.rand(8, 3, 112, 112) * 2 - 1)
    model.eval()
    path = tmp_path_factory.mktemp("ck") / "model.pt"
    save_model_checkpoint(path, model=model, matcher=QAConvMatcher(num_features=32, height=7, width=7), config={})
    return path


@pytest.fixture(scope="package")
def plain_weights(tmp_path_factory) -> Path:
    from occtool.models import build_backbone

    path = tmp_path_factory.mktemp("w") / "backbone.pt"
    torch.save(build_backbone("mobilefacenet").state_dict(), path)
    return path


def write_faces(root: Path, names: list[str], *, seed: int = 0, size: int = 112) -> list[Path]:
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


@pytest.fixture
def augment_like(tmp_path) -> Path:
    """An augment-style output: images/<id>/<x>.png, masks/ (lower half occluded for 'mask' faces,
    all visible for 'clean'), manifest.jsonl."""
    root = tmp_path / "aug"
    names = ["amy/a1.png", "amy/a2.png", "bob/b1.png", "bob/b2.png", "cat/c1.png"]
    write_faces(root / "images", names)
    rows = []
    for k, name in enumerate(names):
        vis = np.full((112, 112), 255, np.uint8)
        occ = "medical_mask" if k % 2 == 0 else "none"
        if occ != "none":
            vis[64:] = 0
        (root / "masks" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(vis).save(root / "masks" / name)
        rows.append({"output": f"images/{name}", "mask": f"masks/{name}", "occluder": occ})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
