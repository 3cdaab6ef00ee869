"""The occlusion head's own schedule (`schedule.occlusion_head_epochs`, issue 12).

The head trains for the first N epochs of the run: its learning rate follows the run's warm-up
and schedule compressed into those N epochs, then it is 0. At the freeze its BatchNorm
statistics are re-estimated exactly over many cached training views (the running average of
the last ~10 batches moves the head's reading of real masks by several points), and from then
on the head runs in eval mode, so nothing of it changes while the other parts train on.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from occtool.errors import ShapeError

HEAD_GROUP = "occlusion_head"  # the optimiser's parameter-group name of the head (only when the option is on)


def head_lr_lambda(run_lambda: Callable[[int], float], head_steps: int) -> Callable[[int], float]:
    """The head group's LR factor: `run_lambda` (built for `head_steps` total steps) until
    `head_steps`, 0 afterwards."""

    def f(step: int) -> float:
        return run_lambda(step) if step < head_steps else 0.0

    return f


def sample_cached_views(images: int, views: int, *, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` seeded (image, view) index pairs, uniform over images and views, images sorted
    (sequential reads of a memory-mapped cache)."""
    from occtool.training.data import view_rng

    rng = view_rng(seed, 0xB4E5)
    img = rng.integers(0, images, count)
    view = rng.integers(0, views, count)
    order = np.argsort(img, kind="stable")
    return img[order], view[order]


@torch.no_grad()
def reestimate_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d, feature_maps: Iterable[torch.Tensor]) -> int:
    """Set `bn`'s running mean and (unbiased) variance to the exact statistics of `conv`'s output
    over every batch of `feature_maps` ([b, C, H, W] each); returns the number of values per
    channel. The weights are untouched."""
    dev = conv.weight.device
    s1 = torch.zeros(conv.out_channels, dtype=torch.float64, device=dev)
    s2 = torch.zeros_like(s1)
    n = 0
    for fm in feature_maps:
        if fm.ndim != 4 or fm.shape[1] != conv.in_channels:
            raise ShapeError(f"feature maps: expected [b, {conv.in_channels}, H, W], got {tuple(fm.shape)}")
        y = conv(fm.to(dev, conv.weight.dtype)).double()
        s1 += y.sum((0, 2, 3))
        s2 += (y * y).sum((0, 2, 3))
        n += y.shape[0] * y.shape[2] * y.shape[3]
    if n < 2:
        raise ShapeError("BatchNorm re-estimation needs at least two values per channel")
    mean = s1 / n
    var = (s2 / n - mean * mean).clamp_min(0.0) * (n / (n - 1))
    bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
    bn.running_var.copy_(var.to(bn.running_var.dtype))
    return n


def freeze_head_batchnorm(head: nn.Module, cache, *, count: int, seed: int, batch_size: int = 512) -> int:
    """Re-estimate the occlusion head's BatchNorm over `count` seeded views of the feature cache
    (`occtool.training.data.FeatureCache`: fm [N, V, C, H, W])."""
    img, view = sample_cached_views(cache.fm.shape[0], cache.views, count=count, seed=seed)
    batches = (cache.fm[torch.from_numpy(img[s: s + batch_size]), torch.from_numpy(view[s: s + batch_size])]
               for s in range(0, count, batch_size))
    return reestimate_batchnorm(head.conv1, head.bn, batches)


__all__ = ["HEAD_GROUP", "freeze_head_batchnorm", "head_lr_lambda", "reestimate_batchnorm", "sample_cached_views"]
