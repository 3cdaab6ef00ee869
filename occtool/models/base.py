"""Backbone base class and its output (the registry is `occtool.models.registry`).

A backbone is split in two so that occlusion-aware embeddings are possible:
`features(x)` (the body, giving the spatial map [B, C, H, W]) and `embed(feature_map)` (the output
layer only, giving the L2-normalised embedding and its norm). `forward(x)` is both.
A backbone may also split its body before the last stage (`split_features`, `last_stage`;
MobileFaceNet does): the trainable QAConv branch of `FaceModel` is a copy of that stage.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from occtool.errors import ConfigError, ShapeError
from occtool.models.preprocess import InputSpec


class BackboneOutput(NamedTuple):
    """embedding [B, D] (L2-normalised), norm [B, 1] (its norm before normalisation),
    feature_map [B, C, H, W] (the body's output, C=512, H=W=7 for 112x112 input)."""

    embedding: torch.Tensor
    norm: torch.Tensor
    feature_map: torch.Tensor


def l2_normalize(raw: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """raw [B, D] -> (raw / ||raw||, ||raw|| [B, 1]); the norm is kept (AdaFace uses it)."""
    norm = torch.linalg.vector_norm(raw, ord=2, dim=1, keepdim=True)
    return raw / norm.clamp_min(eps), norm


class Backbone(nn.Module):
    """Base of all face backbones.

    Attributes: `name`, `input_spec` (InputSpec), `embedding_dim` (D), `feature_channels` (C),
    `feature_size` ((H, W) of the feature map for an input of input_spec.size_hw).
    Subclasses hold the network as `self.net` (whose state dict keys are the published ones, so
    weights load into it strictly) and implement `features(x)` and `embed_raw(feature_map)` (the
    output layer, before normalisation).
    """

    name: str = "backbone"
    embedding_dim: int = 512
    feature_channels: int = 512
    feature_size: tuple[int, int] = (7, 7)
    stage_channels: int | None = None  # C_s of the last stage's input map (None: no split body)

    def __init__(self, *, input_spec: InputSpec) -> None:
        super().__init__()
        self.input_spec = input_spec

    # -- the two halves -------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H_in, W_in] preprocessed -> feature_map [B, C, H, W] (body only)."""
        raise NotImplementedError

    def embed_raw(self, feature_map: torch.Tensor) -> torch.Tensor:
        """feature_map [B, C, H, W] -> raw embedding [B, D] (output layer, not normalised)."""
        raise NotImplementedError

    # -- the body split before its last stage (optional) ------------------------------------------
    def split_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, 3, H_in, W_in] -> (stage_map [B, C_s, H, W]: the last stage's input,
        feature_map [B, C, H, W] = last_stage()(stage_map))."""
        raise ConfigError(f"backbone {self.name} has no split body (the QAConv branch, model.qaconv_branch, "
                          "needs one: mobilefacenet)")

    def last_stage(self) -> nn.Module:
        """The modules mapping stage_map -> feature_map (shared with this backbone, not copied)."""
        raise ConfigError(f"backbone {self.name} has no split body (the QAConv branch, model.qaconv_branch, "
                          "needs one: mobilefacenet)")

    def embed(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feature_map [B, C, H, W] -> (embedding [B, D] L2-normalised, norm [B, 1]).

        The output layer only: `embed(feature_map * visibility)` is an occlusion-aware embedding.
        """
        self.check_feature_map(feature_map)
        return l2_normalize(self.embed_raw(feature_map))

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        """x [B, 3, H_in, W_in] preprocessed (see `preprocess`) -> BackboneOutput."""
        self.check_input(x)
        feature_map = self.features(x)
        embedding, norm = l2_normalize(self.embed_raw(feature_map))
        return BackboneOutput(embedding=embedding, norm=norm, feature_map=feature_map)

    # -- shape checks ---------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        h, w = self.input_spec.size_hw
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (h, w):
            raise ShapeError(f"{self.name} input: expected [B, 3, {h}, {w}] (preprocessed), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ShapeError(f"{self.name} input: expected a float tensor (use occtool.models.preprocess), got {x.dtype}")

    def check_feature_map(self, fm: torch.Tensor) -> None:
        c = self.feature_channels
        h, w = self.feature_size
        if fm.ndim != 4 or tuple(fm.shape[1:]) != (c, h, w):
            raise ShapeError(f"{self.name} feature map: expected [B, {c}, {h}, {w}], got {tuple(fm.shape)}")

    def extra_repr(self) -> str:
        return f"name={self.name!r}, embedding_dim={self.embedding_dim}, feature={self.feature_channels}x{self.feature_size}"


__all__ = ["Backbone", "BackboneOutput", "l2_normalize"]
