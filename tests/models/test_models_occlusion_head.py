"""OcclusionHead: any C, H, W; output in [0, 1]; Kaiming init; gradients."""

from __future__ import annotations

import pytest
import torch

from occtool.errors import ShapeError
from occtool.models import OcclusionHead


@pytest.mark.parametrize("b,c,h,w,hidden", [(1, 512, 7, 7, 128), (3, 64, 5, 9, 16), (2, 8, 1, 1, 4), (4, 128, 14, 3, 32)])
def test_shapes_and_range(b, c, h, w, hidden):
    head = OcclusionHead(in_channels=c, hidden_channels=hidden)
    head.train(b * h * w > 1)  # BatchNorm needs more than one value per channel to train
    with torch.no_grad():
        out = head(torch.randn(b, c, h, w) * 5)
        assert out.shape == (b, 1, h, w)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        head.eval()
        torch.testing.assert_close(head.sigmoid(head.logits(torch.ones(1, c, h, w))), head(torch.ones(1, c, h, w)))
    assert head.conv1.weight.shape == (hidden, c, 3, 3) and head.conv2.weight.shape == (1, hidden, 1, 1)


def test_kaiming_normal_init():
    torch.manual_seed(0)
    head = OcclusionHead(in_channels=512, hidden_channels=256)
    std = float(head.conv1.weight.detach().std())
    expected = (2.0 / (512 * 9)) ** 0.5  # kaiming normal, fan_in, ReLU gain
    assert abs(std - expected) / expected < 0.02
    assert abs(float(head.conv1.weight.detach().mean())) < 0.1 * expected
    expected2 = (1.0 / 256) ** 0.5  # final conv: gain 1 (sigmoid)
    assert abs(float(head.conv2.weight.detach().std()) - expected2) / expected2 < 0.25
    assert float(head.conv2.bias.detach().abs().max()) == 0.0


def test_wrong_channels_named():
    head = OcclusionHead(in_channels=64)
    with pytest.raises(ShapeError, match=r"expected \[B, 64, H, W\], got \(2, 32, 7, 7\)"):
        head(torch.randn(2, 32, 7, 7))


def test_gradcheck():
    head = OcclusionHead(in_channels=3, hidden_channels=4).double().eval()  # eval: BN uses running stats
    with torch.no_grad():
        head.bn.running_mean.uniform_(-0.5, 0.5)
        head.bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(head, (x,), fast_mode=True)
    params = tuple(head.parameters())

    def f(*ps):
        return torch.func.functional_call(head, dict(zip([n for n, _ in head.named_parameters()], ps)), (x,))

    assert torch.autograd.gradcheck(f, tuple(p.detach().requires_grad_() for p in params), fast_mode=True)
