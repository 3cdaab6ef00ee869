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


def _small_cache(lfw_six, cfg, warn):
    from occtool.training.data import build_feature_cache

    records = list_identity_tree(lfw_six)
    loader = ImageLoader(records, synthesizer=None, mask_root=None, flip=True)
    bb = build_backbone("mobilefacenet", weights=default_weights("mobilefacenet")).eval()
    return build_feature_cache(records[:2], loader, bb, cfg, device=torch.device("cpu"), weights_desc="w", warn=warn)


def test_unwritable_cache_dir_is_a_note_not_an_error(lfw_six, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = load_config(TrainConfig, yaml_path=SMOKE, overrides=[
        f"data.train_root={lfw_six}", "device=cpu", "data.runtime=torch", f"data.cache_dir={blocker}/cache",
        "data.cache_views=2", "data.cache_clean_views=2"])
    notes: list[str] = []
    cache = _small_cache(lfw_six, cfg, notes.append)
    assert cache.fm.shape[:2] == (2, 2) and float(cache.fm.float().abs().sum()) > 0
    assert len(notes) == 1 and "cannot be written" in notes[0] and blocker.read_text() == "not a folder"


def test_cache_dir_is_stored_then_read_back(lfw_six, tmp_path):
    cfg = load_config(TrainConfig, yaml_path=SMOKE, overrides=[
        f"data.train_root={lfw_six}", "device=cpu", "data.runtime=torch", f"data.cache_dir={tmp_path}",
        "data.cache_views=2", "data.cache_clean_views=2"])
    first = _small_cache(lfw_six, cfg, None)
    stored = [p for p in tmp_path.iterdir() if p.name.startswith("features-")]
    assert len(stored) == 1 and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    again = _small_cache(lfw_six, cfg, None)
    assert torch.equal(first.fm, again.fm) and torch.equal(first.teacher, again.teacher)
