"""`cosine`: the identity embedding; identity template = re-normalised mean of its images."""

from __future__ import annotations

import numpy as np
import torch

from occtool.evaluation.methods.base import IdentContext, PairContext, ScoringMethod, register_method
from occtool.evaluation.scoring import CosineScorer, cosine_pair_scores, identity_templates
from occtool.progress import report


@register_method
class Cosine(ScoringMethod):
    name = "cosine"
    needs = ("embeddings",)
    field = "embeddings"  # the Features field holding the embedding this method compares
    description = "cosine of the identity embedding"

    def identity_scorer(self, ctx: IdentContext) -> CosineScorer:
        probe = getattr(ctx.probes, self.field)[torch.as_tensor(ctx.p_rows)]
        gallery = getattr(ctx.gallery, self.field)[torch.as_tensor(ctx.g_rows)]
        return CosineScorer(probe, identity_templates(gallery, ctx.g_labels, ctx.n_ids), device=ctx.device)

    def pair_scores(self, ctx: PairContext) -> np.ndarray:
        emb = getattr(ctx.feats, self.field)
        s = cosine_pair_scores(emb[torch.as_tensor(ctx.ia)], emb[torch.as_tensor(ctx.ib)])
        report(ctx.progress, len(s), len(s))
        return s
