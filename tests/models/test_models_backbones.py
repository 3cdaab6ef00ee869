"""Backbone registry, output shapes and contracts for all backbones."""

from __future__ import annotations

import pytest
import torch

from occtool.errors import ConfigError, ShapeError
from occtool.models import Backbone, BackboneOutput, build_backbone, default_weights, list_backbones
from occtool.models.iresnet import STAGE_BLOCKS, IResNet


def test_registry():
    assert list_backbones()[:5] == ["mobilefacenet", "ir18", "ir34", "ir50", "ir100"]  # new ones append
    with pytest.raises(ConfigError, match="unknown backbone 'resnet9'.*mobilefacenet, ir18"):
        build_backbone("resnet9")
    assert default_weights("ir50") is None
    with pytest.raises(ConfigError, match="variant"):
        build_backbone("ir18", variant="timm")


def test_default_weights_for_mobilefacenet(mobilefacenet_dir):
    assert default_weights("mobilefacenet") == mobilefacenet_dir / "mobilefacenet.pt"


@pytest.mark.parametrize("name,batch", [("mobilefacenet", 1), ("mobilefacenet", 3), ("ir18", 2)])
def test_forward_shapes_and_normalisation(name, batch):
    model = build_backbone(name).eval()
    assert isinstance(model, Backbone) and model.name == name
    d = 128 if name == "mobilefacenet" else 512
    assert (model.embedding_dim, model.feature_channels, tuple(model.feature_size)) == (d, 512, (7, 7))
    x = torch.randn(batch, 3, 112, 112)
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, BackboneOutput)
    assert out.embedding.shape == (batch, d) and out.norm.shape == (batch, 1)
    assert out.feature_map.shape == (batch, 512, 7, 7)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(batch))
    assert (out.norm > 0).all()
    with torch.no_grad():
        raw = model.embed_raw(out.feature_map)
        emb, norm = model.embed(out.feature_map)
    torch.testing.assert_close(norm, raw.norm(dim=1, keepdim=True))
    torch.testing.assert_close(emb, out.embedding)
    torch.testing.assert_close(model.features(x), out.feature_map)


@pytest.mark.parametrize("depth", [34, 50, 100])
def test_deep_ir_shapes_on_meta_device(depth):
    """Shapes of the big nets without the compute (meta tensors): keeps CI light on CPUs."""
    model = IResNet(depth).to("meta")
    out = model(torch.empty(2, 3, 112, 112, device="meta"))
    assert out.embedding.shape == (2, 512) and out.norm.shape == (2, 1) and out.feature_map.shape == (2, 512, 7, 7)
    assert [len(getattr(model.net, f"layer{s}")) for s in range(1, 5)] == list(STAGE_BLOCKS[depth])


def test_trainable_parameters():
    model = build_backbone("ir18")
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "net.features.weight")
    assert not model.net.features.weight.requires_grad  # arcface_torch keeps this scale at 1


def test_bad_inputs_name_expected_and_got():
    model = build_backbone("mobilefacenet").eval()
    with pytest.raises(ShapeError, match=r"expected \[B, 3, 112, 112\].*got \(2, 3, 100, 112\)"):
        model(torch.randn(2, 3, 100, 112))
    with pytest.raises(ShapeError, match="float"):
        model(torch.zeros(1, 3, 112, 112, dtype=torch.uint8))
    with pytest.raises(ShapeError, match=r"expected \[B, 512, 7, 7\].*got \(1, 256, 7, 7\)"):
        model.embed(torch.randn(1, 256, 7, 7))


def test_input_spec_follows_variant():
    assert build_backbone("mobilefacenet").input_spec.mean == (0.485, 0.456, 0.406)
    assert build_backbone("ir18").input_spec.channel_order == "RGB"
    ada = build_backbone("ir18", variant="adaface")
    assert ada.input_spec.channel_order == "BGR" and ada.input_spec.mean == (0.5, 0.5, 0.5)
    assert ada.net.layer1[0].downsample is None and not ada.net.features.affine
