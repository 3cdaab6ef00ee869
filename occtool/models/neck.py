"""The QAConv neck: feature map [B, C, H, W] -> matching map [B, C', H, W] (not normalised).

Default (`kernel=1`, no hidden layer, no position): Conv1x1(C -> C') + BatchNorm2d, exactly the
neck occtool has always built (same modules, same state-dict keys, same initialisation order).
Options, each off by default:

- `kernel=3`: a 3x3 conv (padding 1) in place of the 1x1, so each location sees its neighbours;
- `hidden=N`: two layers, conv(C -> N, kernel) + BN + ReLU, then Conv1x1(N -> C') + BN;
- `position=True`: a learned per-location offset [1, C', H, W] added last (`AddPosition`). QAConv
  matches every probe location with every gallery location; on aligned faces the offset lets the
  neck tell an eye from a mouth that look alike locally.
- `local=J` (`LocalProjection`, J [C, L, D] the backbone output layer's Jacobian, frozen): the
  neck first maps each location to its contribution to the pretrained embedding,
  c[:, l] = sum_c fm[c, l] J[c, l, :] (`occtool.matching.visibility_matched`), then centres and
  scales each (channel, location) by a BatchNorm over the D*L values (a contribution carries a
  large part common to all faces at that location), then the 1x1 conv D -> C' (initialised to
  the identity when D == C') and BN. The per-location projection is the one the pretrained network
  learned on millions of faces; only the small layers after it train.
"""

from __future__ import annotations

import torch
from torch import nn


class AddPosition(nn.Module):
    """x [B, C, H, W] + a learned offset [1, C, H, W] (initialised to zero: starts as identity)."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.zeros(1, channels, height, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.position.to(x.dtype)


class LocalProjection(nn.Module):
    """fm [B, C, H, W] -> per-location projection [B, D, H, W] by a fixed J [C, H*W, D] (a buffer,
    saved with the model), then a BatchNorm over the D*H*W (channel, location) values."""

    def __init__(self, jacobian: torch.Tensor, map_size: tuple[int, int]) -> None:
        super().__init__()
        c, l, d = jacobian.shape
        if l != map_size[0] * map_size[1]:
            raise ValueError(f"LocalProjection: J has {l} locations, the map {map_size[0]}x{map_size[1]}")
        self.map_size = tuple(map_size)
        self.register_buffer("jacobian", jacobian.detach().clone().float())
        self.norm = nn.BatchNorm1d(d * l)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = torch.einsum("bcl,cld->bdl", x.flatten(2), self.jacobian.to(x.dtype))  # [B, D, L]
        return self.norm(y.reshape(b, -1)).view(b, -1, *self.map_size)


def build_neck(in_channels: int, channels: int, *, kernel: int = 1, hidden: int | None = None,
               position: bool = False, map_size: tuple[int, int] = (7, 7),
               local: torch.Tensor | None = None) -> nn.Sequential:
    """The neck described in the module doc, as one nn.Sequential (BatchNorms fold with
    `fuse_for_inference`)."""
    if channels < 1 or (hidden is not None and hidden < 1):
        raise ValueError(f"neck: channels and hidden must be >= 1, got {channels}, {hidden}")
    if kernel not in (1, 3):
        raise ValueError(f"neck: kernel must be 1 or 3, got {kernel}")
    if local is not None:
        return _local_neck(local, channels, position=position, map_size=map_size)
    pad = kernel // 2
    if hidden is None:
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, kernel, padding=pad, bias=False),
                                   nn.BatchNorm2d(channels)]
    else:
        layers = [nn.Conv2d(in_channels, hidden, kernel, padding=pad, bias=False), nn.BatchNorm2d(hidden),
                  nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels)]
    if position:
        layers.append(AddPosition(channels, *map_size))
    neck = nn.Sequential(*layers)
    convs = [m for m in neck if isinstance(m, nn.Conv2d)]
    for i, conv in enumerate(convs):  # the conv before the ReLU (two layers) is a ReLU layer
        nonlinearity = "relu" if hidden is not None and i == 0 else "linear"
        nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity=nonlinearity)
    return neck


def _local_neck(jacobian: torch.Tensor, channels: int, *, position: bool, map_size) -> nn.Sequential:
    d = jacobian.shape[2]
    conv = nn.Conv2d(d, channels, 1, bias=False)
    with torch.no_grad():
        if channels == d:
            conv.weight.copy_(torch.eye(d).view(d, d, 1, 1))
        else:
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="linear")
    layers: list[nn.Module] = [LocalProjection(jacobian, map_size), conv, nn.BatchNorm2d(channels)]
    if position:
        layers.append(AddPosition(channels, *map_size))
    return nn.Sequential(*layers)


def output_layer_local_jacobian(backbone) -> torch.Tensor:
    """J [C, L, D] of the backbone's output layer (eval mode; it must be affine in the map)."""
    from occtool.matching.visibility_matched import is_affine, output_layer_jacobian

    was = backbone.training
    backbone.eval()
    try:
        if not is_affine(backbone):
            raise ValueError(f"neck_local needs an output layer affine in the feature map ({backbone.name}'s is not)")
        return output_layer_jacobian(backbone).clone()
    finally:
        backbone.train(was)


__all__ = ["AddPosition", "LocalProjection", "build_neck", "output_layer_local_jacobian"]
