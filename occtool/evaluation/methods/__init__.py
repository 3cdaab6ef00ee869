"""Scoring methods, one file each, registered by name (`list_methods`, `create_method`).

Importing this package registers the built-in methods, in the order reports list them.
"""

from occtool.evaluation.methods.base import (
    IdentContext,
    PairContext,
    Scoring,
    ScoringMethod,
    available_methods,
    create_method,
    list_methods,
    register_method,
    resolve_methods,
)
from occtool.evaluation.methods import cosine, cosine_occ, cosine_occ_matched, qaconv, qaconv_occ, fused, fused_matched  # noqa: F401,E402,E501

__all__ = [
    "IdentContext",
    "PairContext",
    "Scoring",
    "ScoringMethod",
    "available_methods",
    "create_method",
    "list_methods",
    "register_method",
    "resolve_methods",
]
