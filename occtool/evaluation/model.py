"""The model an evaluation runs: a pretrained backbone or an occtool checkpoint, and what it allows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from occtool.errors import OcctoolError
from occtool.evaluation.extract import model_identity
from occtool.evaluation.methods import Scoring, available_methods
from occtool.matching.visibility_matched import DEFAULT_VISIBILITY_EXPONENT


@dataclass
class EvalModel:
    """A model ready for evaluation and what it allows."""

    model: torch.nn.Module  # Backbone or FaceModel
    matcher: torch.nn.Module | None  # QAConvMatcher (trained from a checkpoint, or untrained)
    kind: str  # "backbone" | "checkpoint"
    backbone: str
    source: str  # the weights or checkpoint file
    matcher_trained: bool
    has_visibility: bool
    info: dict = field(default_factory=dict)
    output_layer_affine: bool = False  # the backbone's output layer is affine (cosine_occ_matched)
    runtime: str = "torch"  # extraction runtime: torch | onnxruntime | auto (occtool.runtime)
    threads: int | None = None  # ONNX Runtime intra-op threads (None: occtool.runtime.default_threads())
    fusion_weight: float = 1.0  # the QAConv weight of fused / fused_matched
    visibility_exponent: float = DEFAULT_VISIBILITY_EXPONENT  # cosine_occ_matched: match through v**exponent

    def scoring(self, *, flip: bool = True, fusion_weight: float | None = None) -> Scoring:
        """The model parts scoring methods use (features extracted with `flip`)."""
        bias = None
        if self.has_visibility and self.output_layer_affine:
            from occtool.matching.visibility_matched import output_layer_bias

            backbone = self.model.backbone.eval()
            bias = output_layer_bias(backbone, device=next(backbone.parameters()).device).cpu()
        return Scoring(matcher=self.matcher, matcher_trained=self.matcher_trained, has_visibility=self.has_visibility,
                       output_layer_affine=self.output_layer_affine, matched_bias=bias, views=2 if flip else 1,
                       fusion_weight=self.fusion_weight if fusion_weight is None else fusion_weight,
                       visibility_exponent=self.visibility_exponent)

    def available_methods(self) -> list[str]:
        return available_methods(self.scoring())

    def cache_key(self, flip: bool) -> str | None:
        return model_identity(backbone=self.backbone, weights_file=self.source, flip=flip, kind=self.kind)


def load_eval_model(*, backbone: str | None = None, weights: str | Path | None = None,
                    checkpoint: str | Path | None = None) -> EvalModel:
    """`--checkpoint FILE` (occtool model + matcher) or `--backbone NAME [--weights FILE]`."""
    if checkpoint is not None and (backbone is not None or weights is not None):
        raise OcctoolError("give either --checkpoint or --backbone/--weights, not both")
    if checkpoint is not None:
        return _from_checkpoint(checkpoint)
    if backbone is None:
        raise OcctoolError("give --backbone NAME (with --weights FILE) or --checkpoint FILE")
    from occtool.models import build_backbone, default_weights

    if weights is None:
        weights = default_weights(backbone)
        if weights is None:
            raise OcctoolError(f"--weights FILE is needed for backbone {backbone} (no default weights known)")
    if not Path(weights).is_file():
        raise OcctoolError(f"weights file not found: {weights}")
    model = build_backbone(backbone, weights=weights)
    return EvalModel(
        model=model, matcher=untrained_matcher_for(model), kind="backbone", backbone=backbone,
        source=str(weights), matcher_trained=False, has_visibility=False,
        info={"backbone": backbone, "weights": str(Path(weights).resolve()),
              "matcher": "untrained, parameter-free QAConv on the backbone feature maps"},
    )


def _from_checkpoint(checkpoint: str | Path) -> EvalModel:
    from occtool.matching.visibility_matched import is_affine
    from occtool.models import load_model_checkpoint

    ck = load_model_checkpoint(checkpoint, map_location="cpu")
    model, matcher = ck.model, ck.matcher
    trained = matcher is not None and bool(getattr(matcher, "is_trained", False))
    if matcher is None:
        matcher = untrained_matcher_for(model)
    return EvalModel(
        model=model, matcher=matcher, kind="checkpoint", backbone=model.backbone.name,
        source=str(checkpoint), matcher_trained=trained, has_visibility=True,
        output_layer_affine=is_affine(model.backbone.eval(), device="cpu"),
        info={"checkpoint": str(Path(checkpoint).resolve()), "backbone": model.backbone.name,
              "matcher": "trained QAConv head" if trained else "untrained QAConv (no trained head in checkpoint)"},
    )


def untrained_matcher_for(model) -> torch.nn.Module:
    """The parameter-free QAConv matcher sized for a Backbone's or FaceModel's matching maps."""
    from occtool.matching import QAConvMatcher

    bb = model.backbone if hasattr(model, "backbone") else model
    channels = getattr(model, "match_channels", None) or getattr(model, "neck_channels", None) or bb.feature_channels
    h, w = bb.feature_size
    return QAConvMatcher(num_features=int(channels), height=int(h), width=int(w)).eval()
