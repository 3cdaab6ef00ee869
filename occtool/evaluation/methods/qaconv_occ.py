"""`qaconv_occ`: QAConv with the correlations weighted by the predicted visibility of both faces."""

from __future__ import annotations

from occtool.evaluation.methods.base import Scoring, register_method
from occtool.evaluation.methods.qaconv import QAConv


@register_method
class QAConvOcc(QAConv):
    name = "qaconv_occ"
    needs = ("match_maps", "occlusion")
    use_visibility = True
    description = "QAConv weighted by the predicted visibility of both faces"

    def unavailable(self, scoring: Scoring) -> str | None:
        if not scoring.has_visibility:
            return "needs --checkpoint (a model with an occlusion head)"
        return super().unavailable(scoring)
