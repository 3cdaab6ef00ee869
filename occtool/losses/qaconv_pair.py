"""QAConv pairwise matching loss: binary cross-entropy over the pair logits of a batch.

logits[p, g] (from `QAConvMatcher.pair_logits`) is positive when probe p and gallery g share
an identity. In the usual batch case probe = gallery = the batch, and a sample is never paired
with itself (the diagonal is excluded). With several processes the probe rows are the local
slice of the global batch and the columns the whole gathered batch; `probe_ids`/`gallery_ids`
(sample indices in the global batch) then say which pairs are a sample with itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from occtool.errors import check_shape
from occtool.losses.masked import LOCAL, CountReducer, acc


def pair_targets(probe_labels: Tensor, gallery_labels: Tensor) -> Tensor:
    """[P], [G] -> float [P, G]: 1 where the identities agree."""
    return (probe_labels.reshape(-1, 1) == gallery_labels.reshape(1, -1)).float()


def qaconv_pair_loss(
    logits: Tensor,
    probe_labels: Tensor,
    gallery_labels: Tensor | None = None,
    *,
    probe_ids: Tensor | None = None,
    gallery_ids: Tensor | None = None,
    balanced: bool = False,
    reducer: CountReducer | None = None,
) -> Tensor:
    """BCE-with-logits over the valid pairs of `logits [P, G]`.

    Pairs of a sample with itself are excluded: by ids when given, else the diagonal when
    P == G and gallery_labels is None (probe = gallery = the batch). `balanced`: positives and
    negatives each carry half the weight (mean BCE over positives + mean over negatives, / 2),
    which keeps the rare positive pairs of a PK batch from being drowned; otherwise the plain
    mean over valid pairs. No valid pair -> a zero loss that keeps its grad_fn.
    """
    reducer = reducer or LOCAL
    check_shape("pair logits", logits.shape, "[P, G]", logits.dim() == 2)
    p, g = logits.shape
    if gallery_labels is None:
        gallery_labels = probe_labels
        if probe_ids is None and gallery_ids is None:
            check_shape("pair logits", logits.shape, "[B, B] when gallery_labels is None", p == g)
            probe_ids = gallery_ids = torch.arange(p, device=logits.device)
    check_shape("probe_labels", probe_labels.shape, f"[{p}]", probe_labels.shape == (p,))
    check_shape("gallery_labels", gallery_labels.shape, f"[{g}]", gallery_labels.shape == (g,))

    targets = pair_targets(probe_labels, gallery_labels).to(logits.device)
    valid = torch.ones_like(targets, dtype=torch.bool)
    if probe_ids is not None and gallery_ids is not None:
        valid = probe_ids.reshape(-1, 1).to(logits.device) != gallery_ids.reshape(1, -1).to(logits.device)

    logits = acc(logits)
    targets = targets.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    bce = torch.where(valid, bce, torch.zeros((), device=bce.device, dtype=bce.dtype))

    def part(mask: Tensor) -> Tensor:
        w = mask.to(bce.dtype)
        count = reducer.global_count(w.sum().detach())
        return (bce * w).sum() / torch.where(count > 0, count, torch.ones_like(count)) * reducer.scale

    if not balanced:
        return part(valid)
    pos = valid & (targets > 0.5)
    neg = valid & (targets <= 0.5)
    return 0.5 * (part(pos) + part(neg))
