"""AdaFace: quality-adaptive margin loss (Kim, Jain, Liu, CVPR 2022).

The feature norm ||z_i|| stands for image quality. With running (EMA) estimates mu, sigma of
the batch's norms:

    s_i   = clip(h * (||z_i|| - mu) / (sigma + eps), -1, 1)          (margin scaler)
    g_ang = -m * s_i                                                 (angular margin)
    g_add =  m * s_i + m                                             (additive margin)
    target logit: s * (cos(clip(theta_y + g_ang, eps, pi - eps)) - g_add)
    other logits: s * cos(theta_j)

with cos(theta_j) = <z_i / ||z_i||, W_j / ||W_j||> clamped to [-1 + eps, 1 - eps], and the
loss the cross-entropy of these logits. High-quality (large-norm) samples get an ArcFace-like
angular margin, low-quality ones a CosFace-like additive one. The norms are detached; the
running statistics are buffers updated in training mode only (mu starts at 20, sigma at 100),
and with several processes they are computed over the global batch.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from occtool.errors import ShapeError, check_shape
from occtool.losses.masked import acc


class AdaFaceLoss(nn.Module):
    """Class-centre head + AdaFace margin + cross-entropy.

    forward(embeddings [B, D] L2-normalised, norms [B, 1] or [B], labels [B] int in [0, N))
    -> scalar loss. `logits(...)` gives the margin-adjusted scaled logits [B, N].
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        *,
        m: float = 0.4,
        h: float = 0.333,
        s: float = 64.0,
        t_alpha: float = 0.01,
        eps: float = 1e-3,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if num_classes < 1 or embedding_dim < 1:
            raise ValueError(f"AdaFaceLoss: need embedding_dim, num_classes >= 1, got {embedding_dim}, {num_classes}")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.m, self.h, self.s, self.t_alpha, self.eps = m, h, s, t_alpha, eps
        self.world_size = world_size
        # Class centres [D, N], unit columns at init.
        kernel = torch.empty(embedding_dim, num_classes).uniform_(-1, 1)
        self.kernel = nn.Parameter(F.normalize(kernel, dim=0))
        self.register_buffer("batch_mean", torch.full((1,), 20.0))
        self.register_buffer("batch_std", torch.full((1,), 100.0))

    def extra_repr(self) -> str:
        return f"D={self.embedding_dim}, N={self.num_classes}, m={self.m}, h={self.h}, s={self.s}, t_alpha={self.t_alpha}"

    def _all_sum(self, values: Tensor) -> Tensor:
        """values summed over the processes (a no-op with one)."""
        if self.world_size > 1:
            values = values.clone()
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def _batch_stats(self, norms: Tensor) -> tuple[Tensor, Tensor] | None:
        """Mean and unbiased std of the (global) batch's norms; None when fewer than 2 values.

        Two passes in float64 (mean, then the sum of squared deviations from it): the one-pass
        sum(x^2) - n mean^2 in float32 cancels catastrophically when the norms vary little.
        """
        x = norms.detach().reshape(-1).to(torch.float64)
        total, n = self._all_sum(torch.stack([x.sum(), torch.tensor(float(x.numel()), dtype=torch.float64, device=x.device)]))
        if float(n) < 2:
            return None
        mean = total / n
        var = self._all_sum(((x - mean) ** 2).sum().reshape(1))[0] / (n - 1)
        return mean.to(norms.dtype), var.clamp_min(0.0).sqrt().to(norms.dtype)

    def logits(self, embeddings: Tensor, norms: Tensor, labels: Tensor) -> Tensor:
        check_shape("embeddings", embeddings.shape, f"[B, {self.embedding_dim}]",
                    embeddings.dim() == 2 and embeddings.shape[1] == self.embedding_dim)
        b = embeddings.shape[0]
        norms = norms.reshape(-1, 1)
        check_shape("norms", norms.shape, f"[{b}, 1]", norms.shape[0] == b)
        check_shape("labels", labels.shape, f"[{b}]", labels.shape == (b,))
        if b and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ShapeError(f"labels: expected values in [0, {self.num_classes}), got [{int(labels.min())}, {int(labels.max())}]")

        kernel = F.normalize(acc(self.kernel), dim=0)
        cosine = (acc(embeddings) @ kernel.to(acc(embeddings).dtype)).clamp(-1 + self.eps, 1 - self.eps)

        safe_norms = acc(norms.detach()).clamp(0.001, 100.0)
        if self.training:
            with torch.no_grad():
                stats = self._batch_stats(safe_norms)
                if stats is not None:
                    mean, std = stats
                    self.batch_mean.mul_(1 - self.t_alpha).add_(self.t_alpha * mean)
                    self.batch_std.mul_(1 - self.t_alpha).add_(self.t_alpha * std)

        scaler = (safe_norms - self.batch_mean) / (self.batch_std + self.eps)
        scaler = (scaler * self.h).clamp(-1.0, 1.0)  # [B, 1]

        target = F.one_hot(labels, self.num_classes).to(cosine.dtype)  # [B, N]
        g_angular = -self.m * scaler
        theta = torch.acos(cosine)
        theta_m = (theta + target * g_angular).clamp(self.eps, math.pi - self.eps)
        g_additive = self.m + self.m * scaler
        cosine_m = torch.cos(theta_m) - target * g_additive
        return cosine_m * self.s

    def forward(self, embeddings: Tensor, norms: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(embeddings, norms, labels), labels)
