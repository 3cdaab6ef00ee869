"""OcclusionHead: predicts where the face is visible on the feature grid.

Conv2d(C -> hidden, 3x3, pad 1) -> BatchNorm2d -> ReLU -> Conv2d(hidden -> 1, 1x1) -> Sigmoid;
Kaiming-normal init for both convs. Input [B, C, H, W] (any C = in_channels, any H, W), output
[B, 1, H, W] in [0, 1] (1 = visible, 0 = occluded).
"""

from __future__ import annotations

import torch
from torch import nn

from occtool.errors import ShapeError


class OcclusionHead(nn.Module):
    conv_bn_pairs = (("conv1", "bn"),)  # for occtool.models.fuse

    def __init__(self, *, in_channels: int, hidden_channels: int = 128) -> None:
        super().__init__()
        if in_channels < 1 or hidden_channels < 1:
            raise ValueError(f"in_channels and hidden_channels must be >= 1, got {in_channels}, {hidden_channels}")
        self.in_channels = int(in_channels)
        self.hidden_channels = int(hidden_channels)
        self.conv1 = nn.Conv2d(in_channels, hidden_channels, 3, padding=1, bias=False)  # BN follows
        self.bn = nn.BatchNorm2d(hidden_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden_channels, 1, 1, bias=True)
        self.sigmoid = nn.Sigmoid()
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_in", nonlinearity="relu")
        nn.init.kaiming_normal_(self.conv2.weight, mode="fan_in", nonlinearity="sigmoid")
        nn.init.zeros_(self.conv2.bias)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def logits(self, feature_map: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> pre-sigmoid logits [B, 1, H, W] (for numerically stable losses)."""
        if feature_map.ndim != 4 or feature_map.shape[1] != self.in_channels:
            raise ShapeError(
                f"OcclusionHead input: expected [B, {self.in_channels}, H, W], got {tuple(feature_map.shape)}"
            )
        return self.conv2(self.relu(self.bn(self.conv1(feature_map))))

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> visibility [B, 1, H, W] in [0, 1]."""
        return self.sigmoid(self.logits(feature_map))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, hidden_channels={self.hidden_channels}"


__all__ = ["OcclusionHead"]
