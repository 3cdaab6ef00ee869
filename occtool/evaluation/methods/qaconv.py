"""`qaconv`: QAConv on the matching maps, no visibility; identity = best gallery image. With a
plain pretrained backbone this is the parameter-free, untrained matcher on its feature maps."""

from __future__ import annotations

import numpy as np

from occtool.evaluation.methods.base import IdentContext, PairContext, Scoring, ScoringMethod, register_method
from occtool.evaluation.scoring import QAConvScorer, qaconv_pair_scores


@register_method
class QAConv(ScoringMethod):
    name = "qaconv"
    needs = ("match_maps",)
    per_image = True
    probe_chunk = 64
    use_visibility = False
    description = "QAConv local matching"

    def unavailable(self, scoring: Scoring) -> str | None:
        return None if scoring.matcher is not None else "needs a QAConv matcher"

    def identity_scorer(self, ctx: IdentContext) -> QAConvScorer:
        vis = self.use_visibility
        return QAConvScorer(
            ctx.scoring.matcher, ctx.probes.match_maps, ctx.gallery.match_maps, ctx.g_labels, ctx.n_ids,
            device=ctx.device, probe_vis=ctx.probes.occlusion if vis else None,
            gallery_vis=ctx.gallery.occlusion if vis else None, probe_rows=ctx.p_rows, gallery_rows=ctx.g_rows,
        )

    def pair_scores(self, ctx: PairContext) -> np.ndarray:
        return qaconv_pair_scores(
            ctx.scoring.matcher, ctx.feats.match_maps, ctx.ia, ctx.ib,
            ctx.feats.occlusion if self.use_visibility else None, device=ctx.device,
            chunk=16 if ctx.device.type == "cpu" else 64, progress=ctx.progress,
        )
