"""Fixtures of the classifier tests: a random (untrained) classifier checkpoint, a tiny video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module", autouse=True)
def graph_cache(tmp_path_factory):
    """The feature cache (where predict keeps exported graphs under --runtime auto) in a temporary
    folder, one per test module: tests never write the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("OCCTOOL_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    """model.pt of a random mobilenet_v3_small classifier (no shared data needed)."""
    import torch

    from occtool.classify.checkpoint import save_classifier
    from occtool.classify.models import create_classifier

    torch.manual_seed(0)
    model = create_classifier("mobilenet_v3_small", backbone_weights=None).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_classifier(path, model=model, config={"arch": "mobilenet_v3_small"})
    return path


def write_video(path: Path, frames: int, size_hw=(96, 128), fps: float = 10.0) -> Path:
    """A small MJPG .avi whose frame k is a flat grey level 10 + 20 k (so frames are told apart)."""
    import cv2

    h, w = size_hw
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for k in range(frames):
        writer.write(np.full((h, w, 3), 10 + 20 * k, np.uint8))
    writer.release()
    return path


def write_image(path: Path, size_hw=(112, 112), value: int = 128) -> Path:
    """A flat grey PNG (also under a name without an image suffix)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size_hw, 3), value, np.uint8)).save(path, format="PNG")
    return path
