"""IR-ResNet (IR-18/34/50/100) as in InsightFace arcface_torch `backbones/iresnet.py` and AdaFace
`net.py` (the same network under two key layouts, with two small differences).

The module names here are arcface_torch's (`conv1, bn1, prelu, layer1..4, bn2, dropout, fc,
features`); `occtool.models.keymap` maps AdaFace keys onto them. Per block:
BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the shortcut.

Variants (decided by the layout of the weights loaded):
- "arcface": the first block of every stage has a 1x1 conv + BN shortcut (also layer1.0, whose
  channels do not change); the final BatchNorm1d (`features`) is affine with its weight fixed at 1;
  dropout 0; input RGB, (x/255 - 0.5) / 0.5.
- "adaface": a shortcut whose channels do not change is MaxPool2d(1, stride) (plain subsampling,
  no weights), so layer1.0 has none; the final BatchNorm1d has affine=False; dropout 0.4; input
  BGR, (x/255 - 0.5) / 0.5.
Output layer (both): BN2d -> dropout -> flatten -> Linear(512*7*7 -> 512) -> BN1d.
"""

from __future__ import annotations

import torch
from torch import nn

from occtool.errors import ConfigError
from occtool.models.base import Backbone
from occtool.models.keymap import STAGE_BLOCKS, to_native
from occtool.models.preprocess import HALF_BGR, HALF_RGB
from occtool.models.registry import register_backbone
from occtool.models.weights import load_strict

STAGE_CHANNELS = (64, 128, 256, 512)
VARIANTS = ("arcface", "adaface")


def _check(depth: int, variant: str) -> None:
    if depth not in STAGE_BLOCKS:
        raise ConfigError(f"IR-ResNet depth: expected one of {sorted(STAGE_BLOCKS)}, got {depth}")
    if variant not in VARIANTS:
        raise ConfigError(f"IR-ResNet variant: expected one of {VARIANTS}, got {variant!r}")


def has_conv_shortcut(cin: int, cout: int, stride: int, variant: str) -> bool:
    """arcface_torch: conv shortcut when stride != 1 or channels change; AdaFace: when channels change."""
    if variant == "arcface":
        return stride != 1 or cin != cout
    return cin != cout


class IBasicBlock(nn.Module):
    """bn1 -> conv1 (3x3) -> bn2 -> prelu -> conv2 (3x3, stride) -> bn3, + shortcut."""

    conv_bn_pairs = (("conv1", "bn2"), ("conv2", "bn3"))  # for occtool.models.fuse

    def __init__(self, cin: int, cout: int, stride: int, conv_shortcut: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.stride = stride
        if conv_shortcut:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))
        else:
            if cin != cout:
                raise ValueError("a shortcut without weights needs cin == cout")
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        if self.downsample is not None:
            identity = self.downsample(x)
        elif self.stride != 1:
            identity = x[:, :, :: self.stride, :: self.stride]  # == MaxPool2d(1, stride)
        else:
            identity = x
        return out + identity


class IResNetNet(nn.Module):
    """The network with arcface_torch module names (see the module docstring for the variants)."""

    conv_bn_pairs = (("conv1", "bn1"),)  # for occtool.models.fuse

    def __init__(self, depth: int = 50, variant: str = "arcface", *, embedding_dim: int = 512,
                 dropout: float | None = None, feature_size: tuple[int, int] = (7, 7)) -> None:
        super().__init__()
        _check(depth, variant)
        self.depth = depth
        self.variant = variant
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for stage, (cout, n) in enumerate(zip(STAGE_CHANNELS, STAGE_BLOCKS[depth]), start=1):
            blocks = []
            for i in range(n):
                stride = 2 if i == 0 else 1
                blocks.append(IBasicBlock(cin, cout, stride, has_conv_shortcut(cin, cout, stride, variant)))
                cin = cout
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        if dropout is None:
            dropout = 0.0 if variant == "arcface" else 0.4
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(cin * feature_size[0] * feature_size[1], embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5, affine=variant == "arcface")
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.features.affine:  # arcface_torch keeps this scale fixed at 1
            self.features.weight.requires_grad_(False)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 112, 112] -> layer4 output [B, 512, 7, 7]."""
        x = self.prelu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def head(self, feature_map: torch.Tensor) -> torch.Tensor:
        """[B, 512, 7, 7] -> raw embedding [B, 512] (bn2 -> dropout -> flatten -> fc -> features)."""
        return self.features(self.fc(torch.flatten(self.dropout(self.bn2(feature_map)), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class IResNet(Backbone):
    """IR-ResNet backbone `ir{depth}`: embedding_dim 512, feature map = layer4 output 512 x 7 x 7."""

    embedding_dim = 512
    feature_channels = 512
    feature_size = (7, 7)

    def __init__(self, depth: int = 50, variant: str = "arcface", *, dropout: float | None = None) -> None:
        _check(depth, variant)
        super().__init__(input_spec=HALF_RGB if variant == "arcface" else HALF_BGR)
        self.name = f"ir{depth}"
        self.depth = depth
        self.variant = variant
        self.net = IResNetNet(depth, variant, embedding_dim=self.embedding_dim, dropout=dropout,
                              feature_size=self.feature_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.body(x)

    def embed_raw(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.net.head(feature_map)


def _ir_factory(depth: int):
    def build(*, state=None, variant: str | None = None, source: str = "weights", dropout: float | None = None) -> IResNet:
        """ir{depth}: random init in `variant` (default arcface), or loaded from `state` in
        either key layout (the layout found decides the variant)."""
        if state is None:
            return IResNet(depth=depth, variant=variant or "arcface", dropout=dropout)
        native, layout = to_native(state, depth=depth, source=source)
        if variant is not None and variant != layout:
            raise ConfigError(f"variant={variant!r} requested but the weights are in the {layout} layout")
        model = IResNet(depth=depth, variant=layout, dropout=dropout)
        load_strict(model.net, native, what=f"ir{depth} weights ({layout} layout, {source})")
        return model

    build.__name__ = f"ir{depth}"
    return build


for _depth in STAGE_BLOCKS:  # ir18, ir34, ir50, ir100
    register_backbone(f"ir{_depth}")(_ir_factory(_depth))


__all__ = ["IBasicBlock", "IResNet", "IResNetNet", "STAGE_BLOCKS", "VARIANTS", "has_conv_shortcut"]
