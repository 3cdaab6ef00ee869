"""fuse_for_inference: BatchNorms folded into convs give the same outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from occtool.models import FaceModel, build_backbone, fuse_for_inference, save_model_checkpoint
from occtool.models.iresnet import IResNet


def _randomise_bn_(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def _n_bn2d(model):
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_mobilefacenet_face_model(mobilefacenet_dir):
    model = FaceModel(backbone=build_backbone("mobilefacenet", weights=mobilefacenet_dir / "mobilefacenet.pt"),
                      neck_channels=32)
    _randomise_bn_(model.head), _randomise_bn_(model.neck)
    model.eval()
    fused = fuse_for_inference(model)
    assert _n_bn2d(fused) == 0 and _n_bn2d(model) > 0  # all folded; the original is untouched
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        a, b = model(x), fused(x)
    for f in a._fields:
        torch.testing.assert_close(getattr(b, f), getattr(a, f), rtol=1e-4, atol=1e-4)
    fused_cl = fuse_for_inference(model, channels_last=True)
    with torch.no_grad():
        c = fused_cl(x)
    for f in a._fields:
        torch.testing.assert_close(getattr(c, f), getattr(a, f), rtol=1e-4, atol=1e-4)
    with pytest.raises(TypeError, match="fuse_for_inference"):
        save_model_checkpoint("never.pt", model=fused, matcher=None, config={})


def test_iresnet():
    model = _randomise_bn_(IResNet(18, "arcface")).eval()
    fused = fuse_for_inference(model)
    # what stays: each block's leading bn1 (it precedes a padded conv) and the output bn2
    assert _n_bn2d(fused) == 8 + 1
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        a, b = model(x), fused(x)
    torch.testing.assert_close(b.embedding, a.embedding, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.feature_map, a.feature_map, rtol=1e-4, atol=1e-4 * float(a.feature_map.abs().max()))


def test_inference_copy_is_fused_channels_last_on_cpu_and_idempotent():
    from occtool.models import inference_copy

    model = _randomise_bn_(build_backbone("mobilefacenet")).eval()
    fast = inference_copy(model, "cpu")
    assert fast is not model and _n_bn2d(fast) == 0 and _n_bn2d(model) > 0
    conv = next(m for m in fast.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert inference_copy(fast, "cpu") is fast  # already fused: no second copy
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(fast(x).embedding, model(x).embedding, rtol=1e-4, atol=1e-4)
