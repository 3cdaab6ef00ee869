"""Occlusion loss: MSE between the predicted visibility map and the ground truth.

The ground truth (1 = visible, 0 = occluded) may be given at full image resolution
(`[B, H, W]` or `[B, 1, H, W]`) or already at the map's resolution; it is resized to the map
size (h, w) by area averaging, i.e. each map cell gets the visible fraction of the pixels it
covers (DESIGN piece 4). Samples without ground truth (`has_mask` False) contribute nothing
(visibility-masked reduction, see `occtool.losses.masked`). An element-level validity mask at
either resolution is also accepted: a cell is then weighted by the fraction of its pixels that
have ground truth, and its target is the mean over those pixels only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from occtool.errors import ShapeError, check_shape
from occtool.losses.masked import CountReducer, acc, masked_mean


def area_resize(maps: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """[B, 1, H, W] -> [B, 1, h, w] by area averaging (exact cell means when H, W divide)."""
    if tuple(maps.shape[-2:]) == tuple(size_hw):
        return maps
    return F.adaptive_avg_pool2d(maps, size_hw)


def _as_b1hw(name: str, t: Tensor, b: int) -> Tensor:
    if t.dim() == 3:
        t = t.unsqueeze(1)
    check_shape(name, t.shape, f"[{b}, 1, H, W] or [{b}, H, W]", t.dim() == 4 and t.shape[0] == b and t.shape[1] == 1)
    return t


def occlusion_loss(
    pred: Tensor,
    target: Tensor,
    has_mask: Tensor | None = None,
    *,
    element_valid: Tensor | None = None,
    reducer: CountReducer | None = None,
) -> Tensor:
    """pred [B, 1, h, w] in [0, 1]; target [B, 1, H, W] / [B, H, W] (any H, W >= h, w);
    has_mask bool [B] (None = all have ground truth); element_valid [B, 1, H', W'] / [B, H', W']
    optional (1 where the target is known) -> scalar masked MSE."""
    check_shape("occlusion prediction", pred.shape, "[B, 1, h, w]", pred.dim() == 4 and pred.shape[1] == 1)
    b, _, h, w = pred.shape
    target = _as_b1hw("occlusion target", target, b).to(device=pred.device, dtype=acc(pred).dtype)
    if target.shape[-2] < h or target.shape[-1] < w:
        raise ShapeError(f"occlusion target: expected at least {h}x{w}, got {tuple(target.shape[-2:])}")
    weights = torch.ones((b, 1, h, w), device=pred.device, dtype=acc(pred).dtype)
    if has_mask is not None:
        check_shape("has_mask", has_mask.shape, f"[{b}]", has_mask.shape == (b,))
        weights = weights * has_mask.to(pred.device).to(weights.dtype).reshape(b, 1, 1, 1)
        # Samples without ground truth may carry garbage (NaN, placeholders): never read them.
        target = torch.where(has_mask.to(pred.device).reshape(b, 1, 1, 1), target, torch.zeros((), device=pred.device))
    if element_valid is not None:
        ev = _as_b1hw("element_valid", element_valid, b).to(device=pred.device, dtype=weights.dtype)
        ev_full = F.interpolate(ev, size=target.shape[-2:], mode="nearest") if ev.shape[-2:] != target.shape[-2:] else ev
        target = torch.where(ev_full > 0, target, torch.zeros((), device=pred.device))
        frac = area_resize(ev_full, (h, w))
        small = area_resize(target * ev_full, (h, w)) / frac.clamp_min(1e-12)
        weights = weights * frac
    else:
        small = area_resize(target, (h, w))
    diff = (acc(pred) - small.to(acc(pred).dtype)) ** 2
    return masked_mean(diff, weights, reducer=reducer)
