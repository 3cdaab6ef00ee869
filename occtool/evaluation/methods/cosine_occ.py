"""`cosine_occ`: the occlusion-aware embedding embed(feature_map * v), each face weighted by its
own predicted visibility v (needs a model with an occlusion head)."""

from __future__ import annotations

from occtool.evaluation.methods.base import Scoring, register_method
from occtool.evaluation.methods.cosine import Cosine


@register_method
class CosineOcc(Cosine):
    name = "cosine_occ"
    needs = ("occ_embeddings",)
    field = "occ_embeddings"
    description = "cosine of the occlusion-aware embedding (own predicted visibility)"

    def unavailable(self, scoring: Scoring) -> str | None:
        return None if scoring.has_visibility else "needs --checkpoint (a model with an occlusion head)"
