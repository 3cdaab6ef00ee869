"""The visibility-masked reduction used wherever ground truth exists for only some samples.

A sample (or element) without ground truth contributes nothing: it is not given a fake target,
it is left out of both the numerator and the denominator. A batch with no valid element gives a
zero loss that is still attached to the graph (so `backward()` works and gives zero gradients),
never NaN.

Under DistributedDataParallel the denominator must count the valid elements of the *global*
batch, and DDP averages the gradients of the ranks; `CountReducer` carries both facts so that a
multi-process run computes the same loss as one process over the same global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from occtool.errors import ShapeError


@dataclass(frozen=True)
class CountReducer:
    """How local counts become global ones: all-reduce (sum) over `world_size` processes.

    The loss of a rank is `local_sum / global_count * world_size`, so that the mean over ranks
    (what DDP's gradient averaging computes) equals `global_sum / global_count`.
    """

    world_size: int = 1

    def global_count(self, local: Tensor) -> Tensor:
        if self.world_size <= 1:
            return local
        import torch.distributed as dist

        total = local.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @property
    def scale(self) -> float:
        return float(max(self.world_size, 1))


LOCAL = CountReducer(1)


def acc(t: Tensor) -> Tensor:
    """The accumulation dtype of the losses: float32 (also under autocast), float64 kept."""
    return t if t.dtype == torch.float64 else t.float()


def masked_mean(values: Tensor, valid: Tensor | None = None, *, reducer: CountReducer | None = None) -> Tensor:
    """Mean of `values` over the valid elements only.

    values: any shape. valid: None (all valid), a bool mask or non-negative float weights, of the
    same shape as `values` or broadcastable to it from the left (e.g. `[B]` for `[B, 1, H, W]`:
    per-sample validity). Invalid elements are excluded with `torch.where`, so NaN/inf there
    cannot leak into the result or its gradient. No valid element -> `0 * sum` (grad_fn kept).
    """
    reducer = reducer or LOCAL
    if valid is None:
        weights = torch.ones_like(values)
    else:
        weights = _broadcast_left(valid, values).to(values.dtype)
    selected = weights > 0
    safe = torch.where(selected, values, torch.zeros((), dtype=values.dtype, device=values.device))
    numerator = (safe * weights).sum()
    count = reducer.global_count(weights.sum().detach())
    # No valid element: numerator is exactly 0 (all weights 0), so 0 / 1 = 0 with a grad_fn;
    # branch-free, hence no host-device synchronisation on GPU.
    return numerator / torch.where(count > 0, count, torch.ones_like(count)) * reducer.scale


def _broadcast_left(mask: Tensor, values: Tensor) -> Tensor:
    """`[B]` -> `[B, 1, ..., 1]` then expand to values' shape (left-aligned broadcasting)."""
    if mask.dim() > values.dim():
        raise ShapeError(f"valid mask: expected at most {values.dim()} dims, got {tuple(mask.shape)}")
    m = mask.reshape(tuple(mask.shape) + (1,) * (values.dim() - mask.dim()))
    try:
        return m.expand_as(values)
    except RuntimeError:
        raise ShapeError(
            f"valid mask: shape {tuple(mask.shape)} does not broadcast to values {tuple(values.shape)}"
        ) from None
