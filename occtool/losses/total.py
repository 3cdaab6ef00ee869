"""The total training loss: w_ada * L_ada + w_qa * L_qa + w_occ * L_occ (+ w_con * L_con
+ w_distill * L_distill).

Parts whose weight is 0 are neither computed by the training loop nor added here; every part
is returned (detached) for logging.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import Tensor

LOSS_NAMES = ("adaface", "qaconv", "occlusion", "contrastive", "distill", "qaconv_memory")


@dataclass
class LossOutput:
    total: Tensor  # scalar, with grad
    parts: dict[str, Tensor] = field(default_factory=dict)  # unweighted, detached
    weights: dict[str, float] = field(default_factory=dict)  # the weights used this step

    def as_floats(self) -> dict[str, float]:
        out = {"loss": float(self.total.detach())}
        out.update({f"loss_{k}": float(v) for k, v in self.parts.items()})
        return out


def combine_losses(parts: Mapping[str, Tensor], weights: Mapping[str, float]) -> LossOutput:
    """Weighted sum of the parts present with a non-zero weight; unknown names are an error."""
    unknown = sorted(set(parts) - set(LOSS_NAMES))
    if unknown:
        raise KeyError(f"unknown loss part(s) {unknown}; known: {LOSS_NAMES}")
    total: Tensor | None = None
    used: dict[str, float] = {}
    for name, value in parts.items():
        w = float(weights.get(name, 0.0))
        if w == 0.0:
            continue
        term = w * value
        total = term if total is None else total + term
        used[name] = w
    if total is None:
        some = next(iter(parts.values()), None)
        total = some * 0.0 if some is not None else torch.zeros((), requires_grad=True)
    return LossOutput(total=total, parts={k: v.detach() for k, v in parts.items()}, weights=used)
