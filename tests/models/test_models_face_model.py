"""FaceModel = backbone + OcclusionHead (+ neck)."""

from __future__ import annotations

import pytest
import torch

from occtool.errors import ShapeError
from occtool.models import FaceModel, FaceOutput, build_backbone


@pytest.mark.parametrize("neck", [None, 128])
@pytest.mark.parametrize("batch", [1, 3])
def test_outputs(neck, batch):
    model = FaceModel(backbone=build_backbone("mobilefacenet"), hidden_channels=32, neck_channels=neck).eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 3, 112, 112))
    assert isinstance(out, FaceOutput)
    assert out.embedding.shape == (batch, 128) and out.norm.shape == (batch, 1)
    assert out.feature_map.shape == (batch, 512, 7, 7)
    assert out.occlusion.shape == (batch, 1, 7, 7)
    assert float(out.occlusion.min()) >= 0 and float(out.occlusion.max()) <= 1
    c = 512 if neck is None else neck
    assert out.match_map.shape == (batch, c, 7, 7) and model.match_channels == c
    if neck is None:
        assert out.match_map is out.feature_map
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(batch))
    assert model.input_spec == model.backbone.input_spec and model.head.hidden_channels == 32


def test_gradient_flows_into_head_neck_and_backbone():
    model = FaceModel(backbone=build_backbone("mobilefacenet"), neck_channels=16).train()
    out = model(torch.randn(2, 3, 112, 112))
    target = torch.rand(2, 1, 7, 7)
    occ_loss = ((out.occlusion - target) ** 2).mean()
    # the occlusion loss reaches the backbone's feature map through the head (no detach)
    (g,) = torch.autograd.grad(occ_loss, out.feature_map, retain_graph=True)
    assert float(g.abs().sum()) > 0
    (occ_loss + out.match_map.pow(2).mean() + out.embedding.sum()).backward()
    for name, p in [("head.conv1", model.head.conv1.weight), ("head.conv2", model.head.conv2.weight),
                    ("neck", model.neck[0].weight), ("backbone.conv2", model.backbone.net.conv2[0].weight)]:
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_occlusion_aware_embedding():
    model = FaceModel(backbone=build_backbone("mobilefacenet")).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
        same, norm = model.occlusion_aware_embedding(out.feature_map, torch.ones(2, 1, 7, 7))
        torch.testing.assert_close(same, out.embedding)
        torch.testing.assert_close(norm, out.norm)
        vis = torch.ones(2, 7, 7)
        vis[:, 4:] = 0
        masked, _ = model.occlusion_aware_embedding(out.feature_map, vis)
        expected, _ = model.backbone.embed(out.feature_map * vis[:, None])
    torch.testing.assert_close(masked, expected)
    assert not torch.allclose(masked, out.embedding)
    with pytest.raises(ShapeError, match=r"visibility: expected \[2, 1, 7, 7\], got \(2, 1, 5, 5\)"):
        model.occlusion_aware_embedding(out.feature_map, torch.ones(2, 1, 5, 5))
