"""FaceModel: a backbone + the OcclusionHead (+ an optional neck giving the QAConv matching maps).

forward(x [B, 3, H_in, W_in] preprocessed) -> FaceOutput:
    embedding [B, D] (L2-normalised), norm [B, 1], feature_map [B, C, H, W],
    occlusion [B, 1, H, W] in [0, 1] (1 = visible), match_map [B, C', H, W]
match_map = neck(feature_map) (default Conv1x1 C -> neck_channels + BatchNorm2d; options in
`occtool.models.neck`), or the feature map itself without a neck; it is NOT normalised (the
matcher normalises per location).

QAConv branch (`qaconv_branch=True`, backbones with a split body: MobileFaceNet): a trainable copy
of the backbone's last stage (`Backbone.last_stage`, initialised from its weights) computes the
matching path's own feature map from the last stage's input (stage_map [B, C_s, H, W]):
match_map = neck(branch(stage_map)). The embedding, occlusion head and visibility-matched paths
keep reading the backbone's feature map, so a frozen backbone's embedding never changes; at
initialisation the branch reproduces the feature map exactly. `body(x)` gives both maps.
"""

from __future__ import annotations

from typing import NamedTuple

import copy

import torch
from torch import nn

from occtool.errors import ShapeError
from occtool.models.base import Backbone
from occtool.models.neck import build_neck, output_layer_local_jacobian
from occtool.models.occlusion_head import OcclusionHead


class FaceOutput(NamedTuple):
    embedding: torch.Tensor
    norm: torch.Tensor
    feature_map: torch.Tensor
    occlusion: torch.Tensor
    match_map: torch.Tensor


class FaceModel(nn.Module):
    """Backbone + OcclusionHead (+ neck). Both heads branch off the backbone's feature map."""

    def __init__(self, *, backbone: Backbone, hidden_channels: int = 128, neck_channels: int | None = None,
                 neck_kernel: int = 1, neck_hidden: int | None = None, neck_position: bool = False,
                 neck_local: bool | torch.Tensor = False, qaconv_branch: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.branch = copy.deepcopy(backbone.last_stage()) if qaconv_branch else None
        c = backbone.feature_channels
        self.hidden_channels = int(hidden_channels)
        self.neck_channels = None if neck_channels is None else int(neck_channels)
        self.head = OcclusionHead(in_channels=c, hidden_channels=self.hidden_channels)
        local = None
        if self.neck_channels is None:
            self.neck = None
        else:
            if self.neck_channels < 1:
                raise ValueError(f"neck_channels must be >= 1 or None, got {neck_channels}")
            # neck_local: True computes the output layer's Jacobian J [C, L, D]; a tensor is J itself
            # (a checkpoint's, which its state dict overwrites anyway: no recomputation)
            local = neck_local if isinstance(neck_local, torch.Tensor) else (
                output_layer_local_jacobian(backbone) if neck_local else None)
            self.neck = build_neck(c, self.neck_channels, kernel=neck_kernel, hidden=neck_hidden,
                                   position=neck_position, map_size=tuple(backbone.feature_size), local=local)
        self.neck_options = {"kernel": int(neck_kernel), "hidden": None if neck_hidden is None else int(neck_hidden),
                             "position": bool(neck_position)}
        if local is not None:  # only when on: the default options (and checkpoints) stay as they were
            self.neck_options["local"] = True

    @property
    def qaconv_branch(self) -> bool:
        return self.branch is not None

    # -- what callers need to know (mirrors Backbone) ---------------------------------------------
    @property
    def backbone_name(self) -> str:
        return self.backbone.name

    @property
    def input_spec(self):
        return self.backbone.input_spec

    @property
    def embedding_dim(self) -> int:
        return self.backbone.embedding_dim

    @property
    def feature_channels(self) -> int:
        return self.backbone.feature_channels

    @property
    def feature_size(self) -> tuple[int, int]:
        return tuple(self.backbone.feature_size)

    @property
    def match_channels(self) -> int:
        """C' of match_map: neck_channels, or the backbone's C without a neck."""
        return self.neck_channels if self.neck_channels is not None else self.backbone.feature_channels

    # -- computation --------------------------------------------------------------------------------
    def body(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, 3, H_in, W_in] preprocessed -> (feature_map [B, C, H, W], stage_map [B, C_s, H, W]
        with the QAConv branch, else None)."""
        if self.branch is None:
            return self.backbone.features(x), None
        stage_map, feature_map = self.backbone.split_features(x)
        return feature_map, stage_map

    def match_features(self, feature_map: torch.Tensor, stage_map: torch.Tensor | None = None) -> torch.Tensor:
        """feature_map [B, C, H, W] (stage_map [B, C_s, H, W] with the QAConv branch, which reads
        it instead) -> match_map [B, C', H, W] (not normalised)."""
        if self.branch is not None:
            if stage_map is None:
                raise ShapeError("match_features: this model's QAConv branch needs the last stage's input "
                                 "(stage_map, from FaceModel.body or Backbone.split_features)")
            feature_map = self.branch(stage_map)
        return feature_map if self.neck is None else self.neck(feature_map)

    def occlusion_aware_embedding(self, feature_map: torch.Tensor, visibility: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """backbone.embed(feature_map * visibility): feature_map [B, C, H, W], visibility [B, 1, H, W]
        (or [B, H, W]) -> (embedding [B, D] normalised, norm [B, 1])."""
        if visibility.ndim == 3:
            visibility = visibility[:, None]
        b, _, h, w = feature_map.shape
        if visibility.ndim != 4 or visibility.shape[1] != 1 or tuple(visibility.shape[-2:]) != (h, w) or visibility.shape[0] not in (1, b):
            raise ShapeError(f"visibility: expected [{b}, 1, {h}, {w}], got {tuple(visibility.shape)}")
        return self.backbone.embed(feature_map * visibility.to(feature_map.dtype))

    def forward(self, x: torch.Tensor) -> FaceOutput:
        self.backbone.check_input(x)
        feature_map, stage_map = self.body(x)
        embedding, norm = self.backbone.embed(feature_map)
        return FaceOutput(
            embedding=embedding,
            norm=norm,
            feature_map=feature_map,
            occlusion=self.head(feature_map),
            match_map=self.match_features(feature_map, stage_map),
        )


__all__ = ["FaceModel", "FaceOutput"]
