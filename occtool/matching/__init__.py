"""Occlusion-aware QAConv matching (see `occtool.matching.qaconv` for the shapes and the maths)."""

from occtool.matching.qaconv import (
    DEFAULT_MAX_CHUNK_BYTES,
    DEFAULT_MAX_CHUNK_BYTES_CUDA,
    QAConvMatcher,
    normalize_locations,
    plan_chunks,
    qaconv_max_scores,
    resolve_score_dtype,
)

__all__ = [
    "DEFAULT_MAX_CHUNK_BYTES",
    "DEFAULT_MAX_CHUNK_BYTES_CUDA",
    "QAConvMatcher",
    "normalize_locations",
    "plan_chunks",
    "qaconv_max_scores",
    "resolve_score_dtype",
]
