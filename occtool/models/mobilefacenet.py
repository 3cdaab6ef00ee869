"""MobileFaceNet as shipped in ../shared/weights/mobilefacenet (see its ARCH.md).

Module names mirror the state dict keys exactly, so the shipped weights load strictly:
conv1 -> dw_conv -> features.0..14 (inverted residuals) -> conv2 [512 x 7 x 7: the feature map]
-> gdconv (global depthwise 7x7 + BN) -> conv3 (1x1, 512 -> 128, bias) -> bn -> flatten (128-d).
Input: 112x112 RGB, ImageNet mean/std.
"""

from __future__ import annotations

import torch
from torch import nn

from occtool.errors import ConfigError
from occtool.models.base import Backbone
from occtool.models.preprocess import IMAGENET_RGB
from occtool.models.registry import register_backbone
from occtool.models.weights import load_strict

# (expansion t, out channels c, repeats n, first stride s)
BLOCK_SETTINGS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))
# The last stage: the blocks after the last stride-2 one (features.13, features.14, at 7x7) + conv2.
LAST_STAGE_START = 13


def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class DepthwiseSeparable(nn.Module):
    """`dw_conv`: depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU (plain ReLU, per ARCH.md)."""

    conv_bn_pairs = (("depthwise", "bn1"), ("pointwise", "bn2"))  # for occtool.models.fuse

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.depthwise(x)))
        return self.relu(self.bn2(self.pointwise(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: conv.0 expand 1x1 (+BN+ReLU6), conv.1 depthwise 3x3 (+BN+ReLU6),
    conv.2 project 1x1, conv.3 BN; residual add when stride 1 and cin == cout."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.use_residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            _conv_bn_relu6(cin, hidden, 1),
            _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class GlobalDepthwise(nn.Module):
    """`gdconv`: 7x7 depthwise conv without padding (one weight per channel and location) + BN."""

    conv_bn_pairs = (("depthwise", "bn"),)  # for occtool.models.fuse

    def __init__(self, channels: int, size_hw: tuple[int, int]) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, size_hw, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.depthwise(x))


class MobileFaceNetNet(nn.Module):
    """The network with the published module names (state dict keys of mobilefacenet.pt)."""

    conv_bn_pairs = (("conv3", "bn"),)  # for occtool.models.fuse

    def __init__(self, embedding_dim: int = 128, feature_channels: int = 512, feature_size=(7, 7)) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu6(3, 64, 3, stride=2)
        self.dw_conv = DepthwiseSeparable(64)
        blocks: list[nn.Module] = []
        cin = 64
        for t, c, n, s in BLOCK_SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*blocks)
        self.conv2 = _conv_bn_relu6(cin, feature_channels, 1)
        self.gdconv = GlobalDepthwise(feature_channels, tuple(feature_size))
        self.conv3 = nn.Conv2d(feature_channels, embedding_dim, 1, bias=True)
        self.bn = nn.BatchNorm2d(embedding_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 112, 112] -> conv2 output [B, 512, 7, 7] (after ReLU6)."""
        return self.conv2(self.features(self.dw_conv(self.conv1(x))))

    def split_body(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, 112, 112] -> (features.12 output [B, 128, 7, 7], conv2 output [B, 512, 7, 7]):
        the same computation as `body`, with the last stage's input kept."""
        stage = self.features[:LAST_STAGE_START](self.dw_conv(self.conv1(x)))
        return stage, self.conv2(self.features[LAST_STAGE_START:](stage))

    def head(self, feature_map: torch.Tensor) -> torch.Tensor:
        """[B, 512, 7, 7] -> raw 128-d output (not normalised)."""
        return self.bn(self.conv3(self.gdconv(feature_map))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The published model's output: raw 128-d embedding (what the ONNX file computes)."""
        return self.head(self.body(x))


class MobileFaceNet(Backbone):
    """MobileFaceNet backbone: embedding_dim 128, feature map 512 x 7 x 7 (conv2 output, after
    ReLU6). The published network is `self.net` (its state dict keys are those of mobilefacenet.pt)."""

    name = "mobilefacenet"
    embedding_dim = 128
    feature_channels = 512
    feature_size = (7, 7)
    stage_channels = 128

    def __init__(self) -> None:
        super().__init__(input_spec=IMAGENET_RGB)
        self.net = MobileFaceNetNet(self.embedding_dim, self.feature_channels, self.feature_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.body(x)

    def split_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.split_body(x)

    def last_stage(self) -> nn.Module:
        """features.13, features.14, conv2: [B, 128, 7, 7] -> [B, 512, 7, 7]."""
        return nn.Sequential(*self.net.features[LAST_STAGE_START:], self.net.conv2)

    def embed_raw(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.net.head(feature_map)


@register_backbone("mobilefacenet", default_weights=("weights", "mobilefacenet", "mobilefacenet.pt"))
def mobilefacenet(*, state=None, variant: str | None = None, source: str = "weights") -> MobileFaceNet:
    """MobileFaceNet, random-initialised or loaded strictly from `state` (no variants)."""
    if variant is not None:
        raise ConfigError(f"mobilefacenet has no variants, got variant={variant!r}")
    model = MobileFaceNet()
    if state is not None:
        load_strict(model.net, state, what=f"mobilefacenet weights ({source})")
    return model


__all__ = ["MobileFaceNet", "MobileFaceNetNet"]
