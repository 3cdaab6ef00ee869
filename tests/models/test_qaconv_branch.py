"""The QAConv branch (issue 15): a trainable copy of MobileFaceNet's last stage feeding the neck.
At initialisation it is the frozen path exactly; the embedding path never reads it; it survives a
checkpoint round trip, the ONNX export and feature extraction; other backbones refuse it clearly."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
from torch import nn

from occtool.errors import ConfigError, ShapeError
from occtool.models import FaceModel, build_backbone, load_model_checkpoint, save_model_checkpoint


def _stats(model: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():  # non-trivial BN statistics (a random-initialised net's are trivial)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@functools.lru_cache(maxsize=None)
def _built_pair(neck_local: bool) -> tuple[FaceModel, FaceModel]:
    torch.manual_seed(0)
    bb = _stats(build_backbone("mobilefacenet"))
    with_branch = FaceModel(backbone=bb, hidden_channels=8, neck_channels=16, qaconv_branch=True,
                            neck_local=neck_local).eval()
    without = FaceModel(backbone=bb, hidden_channels=8, neck_channels=16, neck_local=neck_local).eval()
    without.neck.load_state_dict(with_branch.neck.state_dict())
    without.head.load_state_dict(with_branch.head.state_dict())
    return with_branch, without


def _pair(*, neck_local: bool = False) -> tuple[FaceModel, FaceModel]:
    """(model with the branch, the same model without it: same backbone, same neck weights); fresh
    copies (built once: neck_local's Jacobian takes seconds)."""
    return copy.deepcopy(_built_pair(neck_local))


def test_split_features_is_the_body():
    bb = _stats(build_backbone("mobilefacenet"))
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        stage, fm = bb.split_features(x)
        assert stage.shape == (2, bb.stage_channels, 7, 7) == (2, 128, 7, 7)
        assert torch.equal(fm, bb.features(x))
        assert torch.equal(bb.last_stage()(stage), fm)


def test_branch_at_init_equals_the_frozen_path_and_is_a_copy():
    model, plain = _pair()
    x = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        out, ref = model(x), plain(x)
    assert out.match_map.shape == (3, 16, 7, 7)
    for name in ("embedding", "norm", "feature_map", "occlusion", "match_map"):
        assert torch.equal(getattr(out, name), getattr(ref, name)), name
    # a copy: training the branch leaves the backbone (the embedding path) alone
    with torch.no_grad():
        for p in model.branch.parameters():
            p.add_(0.05)
        out2 = model(x)
    assert torch.equal(out2.embedding, ref.embedding) and torch.equal(out2.feature_map, ref.feature_map)
    assert not torch.allclose(out2.match_map, ref.match_map)
    assert model.qaconv_branch and not plain.qaconv_branch


def test_branch_with_the_local_neck():
    model, plain = _pair(neck_local=True)
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(model(x).match_map, plain(x).match_map)


def test_match_features_needs_the_stage_map():
    model, _ = _pair()
    with pytest.raises(ShapeError, match="stage_map"):
        model.match_features(torch.zeros(1, 512, 7, 7))


def test_other_backbones_refuse_the_branch():
    with pytest.raises(ConfigError, match="ir18 has no split body"):
        FaceModel(backbone=build_backbone("ir18"), neck_channels=8, qaconv_branch=True)


def test_checkpoint_round_trip(tmp_path):
    model, plain = _pair(neck_local=True)
    with torch.no_grad():
        for p in model.branch.parameters():
            p.mul_(1.1)
    save_model_checkpoint(tmp_path / "m.pt", model=model, matcher=None, config={})
    save_model_checkpoint(tmp_path / "p.pt", model=plain, matcher=None, config={})
    back = load_model_checkpoint(tmp_path / "m.pt").model
    assert back.qaconv_branch and not load_model_checkpoint(tmp_path / "p.pt").model.qaconv_branch
    assert "qaconv_branch" not in torch.load(tmp_path / "p.pt", weights_only=True)["model"]  # old layout kept
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        a, b = model(x), back(x)
    assert torch.equal(a.match_map, b.match_map) and torch.equal(a.embedding, b.embedding)


def test_onnx_export_round_trip(tmp_path):
    from occtool.models.export import check_onnx, export_onnx

    model, _ = _pair(neck_local=True)
    with torch.no_grad():
        for p in model.branch.parameters():
            p.mul_(1.1)  # the branch differs from the backbone: the graph must use the branch
    path = export_onnx(model, tmp_path / "m.onnx")
    diffs = check_onnx(model, path, torch.randn(3, 3, 112, 112))
    assert diffs["match_map"] < 1e-4


def test_extraction_uses_the_branch(tmp_path):
    """extract_features (image files -> match maps) gives the model's own match_map."""
    from PIL import Image

    from occtool.evaluation.extract import extract_features
    from occtool.models import preprocess

    model, _ = _pair()
    with torch.no_grad():
        for p in model.branch.parameters():
            p.mul_(1.1)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    feats = extract_features(paths, model=model, device="cpu", batch_size=2, num_threads=1)
    with torch.no_grad():
        ref = model(preprocess(images, model.input_spec)).match_map
    torch.testing.assert_close(torch.as_tensor(np.asarray(feats.match_maps)), ref, atol=1e-4, rtol=1e-4)
