"""`fused` (on request): z(cosine) + w * z(QAConv), each z-normalised label-free (identification:
per probe over the gallery identities; pairs: over all pair scores). The QAConv part is
`qaconv_occ` when requested (or, when neither is requested, when available), else `qaconv`."""

from __future__ import annotations

import numpy as np

from occtool.evaluation.methods.base import (
    IdentContext, PairContext, Scoring, ScoringMethod, create_method, register_method,
)
from occtool.evaluation.scoring import FusedScorer, StoredScorer, znorm_global


def qaconv_part(requested, scoring: Scoring) -> str:
    if "qaconv_occ" in requested:
        return "qaconv_occ"
    if "qaconv" in requested:
        return "qaconv"
    return "qaconv_occ" if create_method("qaconv_occ").unavailable(scoring) is None else "qaconv"


@register_method
class Fused(ScoringMethod):
    name = "fused"
    needs = ("embeddings", "match_maps", "occlusion")
    on_request = True
    composite = True  # scores from other methods' full matrices: no shortlist
    description = "z-normalised cosine + z-normalised QAConv"

    def unavailable(self, scoring: Scoring) -> str | None:
        return None if scoring.matcher is not None else "needs a QAConv matcher (and cosine)"

    def components(self, requested, scoring: Scoring) -> tuple[str, str]:
        return "cosine", qaconv_part(requested, scoring)

    def identity_scorer(self, ctx: IdentContext) -> FusedScorer:
        cos, qa = self.components(ctx.requested, ctx.scoring)
        return FusedScorer([StoredScorer(ctx.matrix(cos)), StoredScorer(ctx.matrix(qa))],
                           weights=(1.0, ctx.scoring.fusion_weight))

    def pair_scores(self, ctx: PairContext) -> np.ndarray:
        cos, qa = self.components(ctx.requested, ctx.scoring)
        for name in (cos, qa):
            if name not in ctx.scores:
                ctx.scores[name] = create_method(name).pair_scores(ctx)
        return znorm_global(ctx.scores[cos]) + ctx.scoring.fusion_weight * znorm_global(ctx.scores[qa])
