"""Several processes with torchrun: DDP set-up, synchronised BatchNorm on CPU, gathers with autograd.

`torchrun --nproc_per_node N -m occtool.cli.app train ...` (or `occtool train` under torchrun)
sets WORLD_SIZE/RANK/LOCAL_RANK; `init_distributed` then opens the process group (gloo on CPU,
nccl on GPU). Each process takes its slice of every global batch (PKBatchSampler), and the
training step is written so that W processes compute what one process computes on the whole
global batch:

- BatchNorm statistics are those of the global batch (torch's SyncBatchNorm on GPU; on CPU,
  where torch's SyncBatchNorm refuses to run, `GlobalBatchNorm` below);
- pairwise losses see all pairs: local rows against the gathered global batch
  (`gather_with_grad`), with global normalisers (`occtool.losses.CountReducer`);
- DDP averages the gradients of the ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_dist_info() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))),
    )


def init_distributed(device: torch.device) -> DistInfo:
    """Open the process group when WORLD_SIZE > 1 (env:// rendezvous, as torchrun sets up)."""
    info = env_dist_info()
    if not info.enabled:
        return info
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=info.rank, world_size=info.world_size)
    return info


def cleanup_distributed(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj, info: DistInfo):
    """rank 0's `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_with_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's `x` (same shape on all ranks) along dim 0, differentiably: the
    gradient of each rank's slice flows back to that rank."""
    if not info.enabled:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def gather_plain(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's `x` along dim 0 (no gradient)."""
    if not info.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch over all processes.

    Mean and (biased) variance come from all-reduced sums (two passes) with autograd
    (`torch.distributed.nn.functional.all_reduce`), so the backward pass is exact too; the
    running statistics use the unbiased global variance, as nn.BatchNorm does. Works with any
    backend (gloo on CPU). In eval mode, or without a process group, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        c = input.shape[1]
        dims = [d for d in range(input.dim()) if d != 1]
        x = input.float()
        local_n = torch.tensor([x.numel() / c], dtype=torch.float32, device=x.device)
        # two passes (mean, then squared deviations): no cancellation when |mean| >> std
        sums = all_reduce(torch.cat([x.sum(dim=dims), local_n]))  # differentiable sum over ranks
        n = sums[c]
        mean = sums[:c] / n
        shape = [1, c] + [1] * (input.dim() - 2)
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dim=dims)) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * (n.detach() / (n.detach() - 1).clamp_min(1.0))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach().to(self.running_mean.dtype))
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(self.running_var.dtype))
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm -> synchronised BatchNorm (torch SyncBatchNorm on CUDA, GlobalBatchNorm else)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_global(module)


def _convert_global(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, _convert_global(child))
    return out
