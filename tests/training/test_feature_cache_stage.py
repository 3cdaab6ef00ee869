"""The QAConv branch's feature cache (stage maps beside the feature maps) through ONNX Runtime:
the body's graph with a stage output equals PyTorch on real faces, is kept under its own name,
builds the same cache as PyTorch; the views are made in parallel exactly as serially."""

from __future__ import annotations

import shutil

import numpy as np
import torch

from occtool.augment import OcclusionSynthesizer
from occtool.config import load_config
from occtool.data.images import list_identity_tree
from occtool.models import build_backbone, default_weights, preprocess
from occtool.models.export import STAGE_OUTPUT
from occtool.training import TrainConfig
from occtool.training.data import ImageLoader, _cache_key, body_graph, build_feature_cache, cache_view_stream
from tests.training.conftest import SMOKE


def _cfg(tree, tmp_path, *extra):
    return load_config(TrainConfig, yaml_path=SMOKE, overrides=[
        f"data.train_root={tree}", "device=cpu", "data.threads=1", f"data.cache_dir={tmp_path}", *extra])


def _pretrained():
    return build_backbone("mobilefacenet", weights=default_weights("mobilefacenet")).eval()


def test_stage_graph_equals_pytorch_on_real_faces(lfw_six, tmp_path):
    loader = ImageLoader(list_identity_tree(lfw_six), synthesizer=None, mask_root=None, flip=True)
    bb = _pretrained()
    cfg = _cfg(lfw_six, tmp_path, "data.runtime=onnxruntime")
    graph = body_graph(bb, loader, cfg, device="cpu", weights_desc="abc123", stage=True)
    plain = body_graph(bb, loader, cfg, device="cpu", weights_desc="abc123")
    try:
        assert graph.names[-1] == STAGE_OUTPUT and STAGE_OUTPUT not in plain.names
        assert graph.path.name == "body-mobilefacenet-stage-abc123.onnx" != plain.path.name  # its own file
        assert set(graph.check) == set(graph.names) and max(graph.check.values()) < 1e-4
        x = preprocess(np.stack([loader.image(i) for i in range(len(loader.records))]), bb.input_spec)
        x = torch.cat([x, torch.flip(x, dims=[3])])  # 18 faces and their mirrors
        got = graph.run(x.numpy())
        with torch.inference_mode():
            stage, fm = bb.split_features(x)
        assert got[STAGE_OUTPUT].shape == (36, bb.stage_channels, 7, 7)
        assert float(np.abs(got[STAGE_OUTPUT] - stage.numpy()).max()) < 1e-4
        assert float(np.abs(got["feature_map"] - fm.numpy()).max()) < 1e-4
    finally:
        graph.close()
        plain.close()


def test_a_kept_graph_without_the_stage_output_is_exported_again(lfw_six, tmp_path):
    loader = ImageLoader(list_identity_tree(lfw_six), synthesizer=None, mask_root=None, flip=True)
    bb = _pretrained()
    cfg = _cfg(lfw_six, tmp_path, "data.runtime=onnxruntime")
    plain = body_graph(bb, loader, cfg, device="cpu", weights_desc="w")
    plain.close()
    # an old graph (no stage output) and its passed check under the stage graph's name
    for suffix in (".onnx", ".check.json"):
        shutil.copy(plain.path.with_suffix(suffix), tmp_path / "onnx" / f"body-mobilefacenet-stage-w{suffix}")
    graph = body_graph(bb, loader, cfg, device="cpu", weights_desc="w", stage=True)
    try:
        x = preprocess(np.stack([loader.image(0)]), bb.input_spec).numpy()
        assert STAGE_OUTPUT in graph.check and graph.run(x)[STAGE_OUTPUT].shape == (1, bb.stage_channels, 7, 7)
    finally:
        graph.close()


def test_the_cache_key_changes_with_the_stage(lfw_six, tmp_path):
    records = list_identity_tree(lfw_six)
    plain = _cfg(lfw_six, tmp_path)
    branch = _cfg(lfw_six, tmp_path, "model.qaconv_branch=true")
    assert _cache_key(records, plain, "w") != _cache_key(records, branch, "w")
    assert _cache_key(records, branch, "w") == _cache_key(records, branch, "w")


def test_the_graph_builds_the_pytorch_cache(lfw_six, tmp_path):
    records = list_identity_tree(lfw_six)[:6]
    loader = ImageLoader(records, synthesizer=OcclusionSynthesizer(), mask_root=None, flip=True)
    bb = _pretrained()
    common = ("model.qaconv_branch=true", "data.cache_views=3", "data.cache_clean_views=2", "threads=2")
    caches = {rt: build_feature_cache(records, loader, bb, _cfg(lfw_six, tmp_path / rt, f"data.runtime={rt}", *common),
                                      device=torch.device("cpu"), weights_desc="w")
              for rt in ("torch", "onnxruntime")}
    ref, got = caches["torch"], caches["onnxruntime"]
    assert (tmp_path / "onnxruntime" / "onnx" / "body-mobilefacenet-stage-w.onnx").is_file()
    assert not (tmp_path / "torch" / "onnx").exists()  # the PyTorch build ran no graph
    assert got.stage.shape == ref.stage.shape == (6, 3, bb.stage_channels, 7, 7) and got.stage.dtype == torch.float16
    # float16 rounding of values up to ~7 (one step: 4e-3); float32 graph and PyTorch agree to 1e-4
    assert float((got.stage.float() - ref.stage.float()).abs().max()) <= 4e-3
    assert float((got.fm.float() - ref.fm.float()).abs().max()) <= 4e-3
    assert float((got.teacher - ref.teacher).abs().max()) < 1e-3
    for name in ("fmask", "has_mask", "flipped"):
        assert torch.equal(getattr(got, name), getattr(ref, name)), name


def test_parallel_views_are_the_serial_views(synthetic_tree, tmp_path):
    records = list_identity_tree(synthetic_tree)[:10]
    cfg = _cfg(synthetic_tree, tmp_path, "data.cache_views=4", "data.cache_clean_views=2", "data.runtime=torch")
    loader = ImageLoader(records, synthesizer=OcclusionSynthesizer(config=cfg.data.occlusion), mask_root=None,
                         flip=True)
    serial = list(cache_view_stream(loader, len(records), cfg, workers=1))
    parallel = list(cache_view_stream(loader, len(records), cfg, workers=3, window=2))
    assert [i for i, _ in parallel] == list(range(len(records)))
    occluded = 0
    for (_, a), (_, b) in zip(serial, parallel):
        for va, vb in zip(a, b, strict=True):
            assert np.array_equal(va.image, vb.image) and np.array_equal(va.visibility, vb.visibility)
            assert (va.has_mask, va.flipped) == (vb.has_mask, vb.flipped)
            occluded += int(not np.array_equal(va.image, va.clean))
    assert occluded >= len(records)  # the views were really occluded (2 of 4 per image, keep_clean 0.3)


def test_parallel_cache_build_is_bit_identical(synthetic_tree, tmp_path):
    records = list_identity_tree(synthetic_tree)[:8]
    bb = build_backbone("mobilefacenet", weights=None).eval()
    caches = []
    for threads in (1, 3):
        cfg = _cfg(synthetic_tree, tmp_path / str(threads), f"threads={threads}", "data.cache_views=3",
                   "data.cache_clean_views=2", "data.runtime=torch", "data.cache_batch_size=3",
                   "model.qaconv_branch=true")
        loader = ImageLoader(records, synthesizer=OcclusionSynthesizer(config=cfg.data.occlusion), mask_root=None,
                             flip=True)
        caches.append(build_feature_cache(records, loader, bb, cfg, device=torch.device("cpu"), weights_desc="random"))
    for name in ("fm", "stage", "fmask", "has_mask", "flipped", "teacher"):
        assert torch.equal(getattr(caches[0], name), getattr(caches[1], name)), name
