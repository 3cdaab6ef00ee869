"""Supervised contrastive loss (Khosla et al. 2020) over identity labels; InfoNCE when each
identity has exactly two views.

For L2-normalised embeddings z and temperature tau, anchor i, its positives P(i) (same label,
j != i) and all others A(i) (j != i):

    l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p / tau) / sum_{a in A(i)} exp(z_i.z_a / tau) )

and the loss is the mean of l_i over anchors that have at least one positive (masked
reduction: a batch without any positive pair gives a zero loss with a grad_fn).
With several processes, `gallery_embeddings`/`gallery_labels`/ids give the gathered global
batch while the anchors are the local rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from occtool.errors import check_shape
from occtool.losses.masked import CountReducer, acc, masked_mean


def supervised_contrastive_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    temperature: float = 0.07,
    gallery_embeddings: Tensor | None = None,
    gallery_labels: Tensor | None = None,
    anchor_ids: Tensor | None = None,
    gallery_ids: Tensor | None = None,
    reducer: CountReducer | None = None,
) -> Tensor:
    """embeddings [B, D] (normalised here), labels [B] -> scalar."""
    check_shape("embeddings", embeddings.shape, "[B, D]", embeddings.dim() == 2)
    b = embeddings.shape[0]
    check_shape("labels", labels.shape, f"[{b}]", labels.shape == (b,))
    if gallery_embeddings is None:
        gallery_embeddings, gallery_labels = embeddings, labels
        anchor_ids = gallery_ids = torch.arange(b, device=embeddings.device)
    assert gallery_labels is not None and anchor_ids is not None and gallery_ids is not None
    z = F.normalize(acc(embeddings), dim=1)
    zg = F.normalize(acc(gallery_embeddings), dim=1).to(z.dtype)
    logits = z @ zg.t() / temperature  # [B, G]
    not_self = anchor_ids.reshape(-1, 1) != gallery_ids.reshape(1, -1)
    positive = (labels.reshape(-1, 1) == gallery_labels.reshape(1, -1)) & not_self
    neg_inf = torch.finfo(logits.dtype).min
    log_denominator = torch.logsumexp(torch.where(not_self, logits, torch.full_like(logits, neg_inf)), dim=1, keepdim=True)
    log_prob = logits - log_denominator
    n_pos = positive.sum(dim=1)
    per_anchor = -torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1) / n_pos.clamp_min(1)
    return masked_mean(per_anchor, n_pos > 0, reducer=reducer)
