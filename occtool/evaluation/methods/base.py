"""The scoring-method contract, the model parts methods score with, and the registry.

A method turns extracted `Features` into scores, in two protocols:
- identification: `identity_scorer(ctx)` -> an object whose `identity_scores(rows: slice)` gives
  the [p, I] scores of the probes in `rows` against every gallery identity (per-image methods also
  offer `scores_for(probe, ids)`, which the cosine shortlist uses to re-rank);
- pairs: `pair_scores(ctx)` -> [N] scores of the aligned pairs (feats[ia[i]], feats[ib[i]]).

A new method is one file: a subclass decorated with `@register_method`, imported by
`occtool/evaluation/methods/__init__.py`. Shapes: P probes, G gallery images, I identities,
D embedding size, VL views x locations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np
import torch

from occtool.errors import ConfigError
from occtool.matching.visibility_matched import DEFAULT_VISIBILITY_EXPONENT

_REGISTRY: dict[str, type["ScoringMethod"]] = {}


@dataclass
class Scoring:
    """What scoring needs of a model, beside its extracted features."""

    matcher: torch.nn.Module | None = None  # QAConvMatcher (trained, or the parameter-free one)
    matcher_trained: bool = False
    has_visibility: bool = False  # the model predicts occlusion maps
    output_layer_affine: bool = False  # cosine_occ_matched is exact for this backbone
    matched_bias: torch.Tensor | None = None  # [D] output layer at an all-zero map (cosine_occ_matched)
    views: int = 1  # views per image in the features: 2 with flip TTA
    fusion_weight: float = 1.0  # fused = z(cosine) + fusion_weight * z(qaconv[_occ])
    visibility_exponent: float = DEFAULT_VISIBILITY_EXPONENT  # cosine_occ_matched matches through v**exponent


@dataclass
class IdentContext:
    """Identification inputs: probe and gallery features and the rows that take part."""

    probes: object  # Features
    gallery: object  # Features
    p_rows: np.ndarray  # [P] rows of `probes` that take part (images that loaded)
    g_rows: np.ndarray  # [G] rows of `gallery` that take part
    g_labels: np.ndarray  # [G] identity index of each gallery row, in [0, I)
    true_ids: np.ndarray  # [P] identity index of each probe, -1 when not in the gallery
    n_ids: int
    scoring: Scoring
    device: torch.device
    requested: tuple[str, ...] = ()
    matrices: dict[str, torch.Tensor] = field(default_factory=dict)  # kept [P, I] score matrices

    def matrix(self, name: str) -> torch.Tensor:
        """The full [P, I] identity scores of a method (kept from its run, or computed now)."""
        if name not in self.matrices:
            from occtool.evaluation.scoring import identify

            method = create_method(name)
            _, self.matrices[name] = identify(method.identity_scorer(self), self.true_ids, self.n_ids,
                                              keep_matrix=True, chunk=method.probe_chunk)
        return self.matrices[name]


@dataclass
class PairContext:
    """Pair inputs: one feature set and the aligned index arrays of the pairs."""

    feats: object  # Features
    ia: np.ndarray  # [N]
    ib: np.ndarray  # [N]
    scoring: Scoring
    device: torch.device
    requested: tuple[str, ...] = ()
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # methods scored so far
    progress: Callable[[int, int], None] | None = None


class ScoringMethod:
    """Base class; see the module doc."""

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ("embeddings",)  # Features fields it reads
    on_request: ClassVar[bool] = False  # left out of the default ("auto") method list
    per_image: ClassVar[bool] = False  # scores gallery images (identity = best image)
    probe_chunk: ClassVar[int] = 256  # probes per identification step
    description: ClassVar[str] = ""

    def unavailable(self, scoring: Scoring) -> str | None:
        """None when the model allows this method, else why not (one phrase)."""
        return None

    def identity_scorer(self, ctx: IdentContext):
        raise NotImplementedError

    def pair_scores(self, ctx: PairContext) -> np.ndarray:
        raise NotImplementedError


def register_method(cls: type[ScoringMethod]) -> type[ScoringMethod]:
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"scoring method name missing or registered twice: {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    """Every registered method, in registration order (the order reports use)."""
    return list(_REGISTRY)


def create_method(name: str) -> ScoringMethod:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown scoring method {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]()


def available_methods(scoring: Scoring) -> list[str]:
    """The default method list for a model: every available method not marked on_request."""
    return [n for n in _REGISTRY if not _REGISTRY[n].on_request and _REGISTRY[n]().unavailable(scoring) is None]


def resolve_methods(requested, scoring: Scoring) -> list[str]:
    """None / 'auto' / [] -> `available_methods`; else the validated list, in the order given."""
    if isinstance(requested, str):
        requested = [m.strip() for m in requested.split(",") if m.strip()]
    if not requested or list(requested) == ["auto"]:
        return available_methods(scoring)
    out: list[str] = []
    for name in requested:
        why = create_method(name).unavailable(scoring)
        if why is not None:
            raise ConfigError(f"--methods {name} {why}; available here: {', '.join(available_methods(scoring))}")
        if name not in out:
            out.append(name)
    return out
