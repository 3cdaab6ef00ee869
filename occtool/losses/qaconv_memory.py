"""QAConv class-memory loss: each sample of a batch is matched against a memory of one feature
map per training identity (as the original QAConv trains), not only against the batch.

The memory holds, per identity, the matching map [C', H, W] and visibility [1, H, W] of the
last sample seen of it (of a batch's samples of that identity: the most visible one), detached.
A step scores the batch ([B] probes) against a subset of the memory ([S] entries): the batch's
own identities (the positives) and the `negatives` identities whose memory entries are most
similar to some sample of the batch by a cheap global descriptor (hard negatives; the mean of
the per-location normalised map over its visible locations). The loss is the pairwise BCE of
`occtool.losses.qaconv_pair` over those [B, S] pairs; then the memory takes the batch's maps.
Identities never seen yet take no part. Shapes: B batch, N identities, C' channels, H x W map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from occtool.errors import check_shape
from occtool.losses.masked import CountReducer
from occtool.losses.qaconv_pair import qaconv_pair_loss


def global_descriptor(maps: Tensor, vis: Tensor | None) -> Tensor:
    """[B, C, H, W] (+ visibility [B, 1, H, W]) -> [B, C] unit vectors: the visibility-weighted
    mean of the per-location normalised map."""
    f = F.normalize(maps.float(), dim=1)
    if vis is not None:
        f = f * vis.float()
    return F.normalize(f.flatten(2).sum(-1), dim=1)


class QAConvClassMemory(nn.Module):
    """The per-identity memory and its loss (see the module doc)."""

    def __init__(self, *, num_classes: int, channels: int, height: int, width: int, negatives: int) -> None:
        super().__init__()
        if num_classes < 2 or negatives < 1:
            raise ValueError(f"QAConvClassMemory: needs >= 2 classes and >= 1 negative, got {num_classes}, {negatives}")
        self.negatives = int(negatives)
        self.register_buffer("maps", torch.zeros(num_classes, channels, height, width))
        self.register_buffer("vis", torch.ones(num_classes, 1, height, width))
        self.register_buffer("filled", torch.zeros(num_classes, dtype=torch.bool))

    @torch.no_grad()
    def select(self, maps: Tensor, vis: Tensor | None, labels: Tensor) -> Tensor:
        """Memory rows to score this batch against: its own (filled) identities + the hardest
        `negatives` other filled identities. -> [S] long (sorted)."""
        filled = self.filled.clone()
        own = torch.zeros_like(filled)
        own[labels] = True
        pos = torch.nonzero(own & filled).flatten()
        cand = filled & ~own
        n = min(self.negatives, int(cand.sum()))
        if n == 0:
            return pos
        sim = global_descriptor(maps, vis) @ global_descriptor(self.maps, self.vis).T  # [B, N]
        hardest = sim.max(dim=0).values.masked_fill(~cand, float("-inf"))
        neg = torch.topk(hardest, n).indices
        return torch.sort(torch.cat([pos, neg])).values

    def loss(self, matcher: nn.Module, maps: Tensor, vis: Tensor | None, labels: Tensor, *,
             balanced: bool = True, reducer: CountReducer | None = None) -> Tensor:
        """Pairwise BCE of the batch against the selected memory rows (a zero loss with a grad_fn
        while the memory is empty)."""
        check_shape("maps", maps.shape, "[B, C', H, W]", maps.dim() == 4 and maps.shape[1:] == self.maps.shape[1:])
        rows = self.select(maps.detach(), None if vis is None else vis.detach(), labels)
        if rows.numel() == 0:
            return maps.sum() * 0.0
        mem_vis = None if vis is None else self.vis[rows].to(vis.dtype)
        logits = matcher.pair_logits(maps, self.maps[rows].to(maps.dtype), vis, mem_vis)  # [B, S]
        return qaconv_pair_loss(logits, labels, rows, balanced=balanced, reducer=reducer)

    @torch.no_grad()
    def update(self, maps: Tensor, vis: Tensor | None, labels: Tensor) -> None:
        """Store, per identity of the batch, the map of its most visible sample."""
        score = torch.ones(len(labels), device=maps.device) if vis is None else vis.flatten(1).float().mean(1)
        for label in torch.unique(labels):
            idx = torch.nonzero(labels == label).flatten()
            best = idx[torch.argmax(score[idx])]
            self.maps[label] = maps[best].float()
            if vis is not None:
                self.vis[label] = vis[best].float()
            self.filled[label] = True


__all__ = ["QAConvClassMemory", "global_descriptor"]
