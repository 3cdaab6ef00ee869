"""The frozen body of the training feature cache through ONNX Runtime: the same feature maps as
PyTorch on real faces (to float16 rounding), the graph kept beside the cache, data.runtime validated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from occtool.config import load_config
from occtool.data.images import list_identity_tree
from occtool.errors import ConfigError
from occtool.models import build_backbone, default_weights
from occtool.training import TrainConfig
from occtool.training.data import ImageLoader, body_graph, compute_views_features
from tests.training.conftest import SMOKE


def _cfg(tree, tmp_path, runtime):
    return load_config(TrainConfig, yaml_path=SMOKE, overrides=[
        f"data.train_root={tree}", "device=cpu", f"data.runtime={runtime}", "data.threads=1",
        f"data.cache_dir={tmp_path}"])


def test_body_graph_gives_the_same_maps(lfw_six, tmp_path):
    records = list_identity_tree(lfw_six)
    loader = ImageLoader(records, synthesizer=None, mask_root=None, flip=True)
    bb = build_backbone("mobilefacenet", weights=default_weights("mobilefacenet")).eval()
    assert body_graph(bb, loader, _cfg(lfw_six, tmp_path, "torch"), device="cpu", weights_desc="w") is None
    graph = body_graph(bb, loader, _cfg(lfw_six, tmp_path, "onnxruntime"), device="cpu", weights_desc="abc123")
    assert graph is not None and list((tmp_path / "onnx").glob("body-mobilefacenet-abc123.onnx"))
    images = np.stack([loader.image(i) for i in range(6)])
    with torch.inference_mode():
        ref = compute_views_features(bb, images, device="cpu", batch_size=4)
        got = compute_views_features(bb, images, device="cpu", batch_size=4, graph=graph)
    graph.close()
    assert got.dtype == ref.dtype == torch.float16 and got.shape == ref.shape
    assert float((got.float() - ref.float()).abs().max()) <= 4e-3  # float16 rounding of maps up to 6


def test_data_runtime_is_validated(lfw_six, tmp_path):
    with pytest.raises(ConfigError, match="runtime"):
        _cfg(lfw_six, tmp_path, "tensorrt")
