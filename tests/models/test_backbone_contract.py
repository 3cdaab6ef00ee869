"""The contract every registered backbone meets (one parametrised test per `list_backbones()` name).

A new architecture file that registers itself is checked here without touching this file.
"""

from __future__ import annotations

import pytest
import torch

from occtool.errors import ConfigError
from occtool.models import Backbone, BackboneOutput, InputSpec, create_backbone, list_backbones, register_backbone
from occtool.models.registry import build_backbone


@pytest.fixture(scope="module", params=list_backbones())
def built(request):
    torch.manual_seed(0)
    return request.param, create_backbone(request.param).eval()


def test_identity_and_spec(built):
    name, model = built
    assert isinstance(model, Backbone) and model.name == name
    assert isinstance(model.input_spec, InputSpec)
    assert model.input_spec.size_hw == (112, 112)
    assert model.input_spec.channel_order in ("RGB", "BGR")
    assert model.embedding_dim > 0 and model.feature_channels > 0


def test_shapes_and_embed_raw_consistency(built):
    name, model = built
    h, w = model.input_spec.size_hw
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
        raw = model.embed_raw(out.feature_map)
        emb, norm = model.embed(out.feature_map)
    c, (fh, fw), d = model.feature_channels, model.feature_size, model.embedding_dim
    assert isinstance(out, BackboneOutput)
    assert out.feature_map.shape == (2, c, fh, fw)
    assert out.embedding.shape == (2, d) and out.norm.shape == (2, 1)
    assert raw.shape == (2, d)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(norm, raw.norm(dim=1, keepdim=True))
    torch.testing.assert_close(out.norm, norm)
    torch.testing.assert_close(emb, out.embedding)
    torch.testing.assert_close(raw / norm, emb)


def test_weights_round_trip(built):
    """create_backbone(name, weights=<its own net's state dict>) rebuilds the same weights."""
    name, model = built
    state = model.net.state_dict()
    again = create_backbone(name, weights=state)
    assert type(again) is type(model) and again.input_spec == model.input_spec
    for key, value in again.net.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_registry_functions():
    assert build_backbone is create_backbone
    with pytest.raises(ConfigError, match="unknown backbone 'nope'"):
        create_backbone("nope")
    with pytest.raises(ValueError, match="registered twice"):
        register_backbone(list_backbones()[0])(lambda **kw: None)
