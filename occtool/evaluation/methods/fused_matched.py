"""`fused_matched` (on request): z(cosine_occ_matched) + w * z(QAConv), as `fused` but with the
visibility-matched embedding as its cosine part (the strongest embedding method); the QAConv part
is chosen as `fused`'s (`qaconv_occ` when available)."""

from __future__ import annotations

from occtool.evaluation.methods.base import Scoring, create_method, register_method
from occtool.evaluation.methods.fused import Fused, qaconv_part


@register_method
class FusedMatched(Fused):
    name = "fused_matched"
    needs = ("contributions", "visibility_views", "match_maps", "occlusion")
    description = "z-normalised cosine_occ_matched + z-normalised QAConv"

    def unavailable(self, scoring: Scoring) -> str | None:
        return create_method("cosine_occ_matched").unavailable(scoring) or super().unavailable(scoring)

    def components(self, requested, scoring: Scoring) -> tuple[str, str]:
        return "cosine_occ_matched", qaconv_part(requested, scoring)
