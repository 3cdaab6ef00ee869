"""The supervised contrastive loss against two slow references: the paper's formula as a plain
loop, and pytorch-metric-learning's SupConLoss algorithm (v2: max-shifted cosine logits,
logsumexp over every other sample, mean log-probability over the positives, averaged over the
anchors that have a positive: its AvgNonZeroReducer), re-written here in float64 because the
package is not a dependency. Agreement to 1e-6."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from occtool.losses import supervised_contrastive_loss


def paper_loop(emb, labels, tau):
    z = F.normalize(emb.double(), dim=1)
    n, losses = len(labels), []
    for i in range(n):
        pos = [j for j in range(n) if j != i and labels[j] == labels[i]]
        if not pos:
            continue
        den = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(n) if a != i)
        losses.append(-sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / den) for p in pos) / len(pos))
    return sum(losses) / len(losses) if losses else 0.0


def pml_supcon(emb, labels, tau):
    """pytorch_metric_learning.losses.SupConLoss(temperature=tau)(emb, labels), step by step."""
    z = F.normalize(emb.double(), dim=1)
    mat = z @ z.t() / tau
    n = len(labels)
    same = labels.reshape(-1, 1) == labels.reshape(1, -1)
    eye = torch.eye(n, dtype=torch.bool)
    pos_mask, neg_mask = same & ~eye, ~same
    mat = mat - mat.max(dim=1, keepdim=True).values.detach()
    den = torch.logsumexp(mat.masked_fill(~(pos_mask | neg_mask), -float("inf")), dim=1, keepdim=True)
    log_prob = mat - den
    per_anchor = []
    for i in range(n):
        if pos_mask[i].any():
            per_anchor.append(-(log_prob[i][pos_mask[i]]).mean())
    losses = [v for v in per_anchor if v > 0]  # AvgNonZeroReducer
    return float(torch.stack(losses).mean()) if losses else 0.0


@pytest.mark.parametrize("tau", [0.05, 0.07, 0.5, 2.0])
def test_several_positives_an_anchor_without_positive_and_temperature(tau):
    torch.manual_seed(3)
    emb = torch.randn(11, 6, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4])  # 3 and 4 have no positive
    got = float(supervised_contrastive_loss(emb, labels, temperature=tau))
    assert got == pytest.approx(paper_loop(emb, labels, tau), abs=1e-6, rel=1e-6)
    assert got == pytest.approx(pml_supcon(emb, labels, tau), abs=1e-6, rel=1e-6)


def test_temperature_scales_the_logits_and_the_norm_does_not_matter():
    torch.manual_seed(4)
    emb = torch.randn(8, 5, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    a = supervised_contrastive_loss(emb, labels, temperature=0.1)
    b = supervised_contrastive_loss(emb * 7.0, labels, temperature=0.1)
    assert float(a) == pytest.approx(float(b), rel=1e-12)
    # a sharper temperature separates a well-clustered batch more: lower loss
    clustered = F.normalize(torch.eye(4, dtype=torch.float64).repeat_interleave(2, 0) + 0.05 * emb[:, :4], dim=1)
    assert float(supervised_contrastive_loss(clustered, labels, temperature=0.05)) < \
        float(supervised_contrastive_loss(clustered, labels, temperature=1.0))


def test_gathered_gallery_equals_the_single_process_loss():
    """Two "ranks" each with half of the anchors, over the gathered batch: the mean of their
    per-anchor losses weighted by positives-having anchors is the single-process loss."""
    torch.manual_seed(5)
    emb = torch.randn(8, 4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    ids = torch.arange(8)
    full = supervised_contrastive_loss(emb, labels, temperature=0.2)
    halves = [supervised_contrastive_loss(emb[s], labels[s], temperature=0.2, gallery_embeddings=emb,
                                          gallery_labels=labels, anchor_ids=ids[s], gallery_ids=ids)
              for s in (slice(0, 4), slice(4, 8))]
    assert float(sum(halves) / 2) == pytest.approx(float(full), rel=1e-12)
