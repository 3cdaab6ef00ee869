"""Configs of the occlusion synthesis and of `occtool augment` (dataclasses; the occluder list and
their default weights come from the occluder registry).

`SynthesisConfig` is what `OcclusionSynthesizer` (and so training on the fly) needs;
`AugmentConfig` extends it with the batch command's settings. Override any key with
`--set weights.hand=0`, `--set rectangles.count=[1,2]`, `--set transparent.opacity=[0.4,0.6]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Literal, Optional

from occtool.augment.degrade import DegradeConfig
from occtool.augment.occluders import MASK_TYPES, REAL_MASK_TYPES, default_occluder_weights, list_occluders
from occtool.augment.occluders.rectangles import RECT_FILLS
from occtool.config import ConfigValueError, check_interval, check_range, check_subset

# Derived from the occluder registry (occtool.augment.occluders): registration order.
OCCLUDER_NAMES = tuple(list_occluders())
OPAQUE_OCCLUDERS = tuple(list_occluders("opaque"))
TRANSPARENT_OCCLUDERS = tuple(list_occluders("transparent"))


def _as_dict(self) -> dict[str, float]:
    return {f.name: float(getattr(self, f.name)) for f in fields(self)}


def _check_weights(self) -> None:
    for f in fields(self):
        check_range(f.name, getattr(self, f.name), lo=0.0)


# One float field per registered occluder, defaulting to its registered weight, so a new
# occluder file brings its `weights.<name>` key (YAML / --set) with it.
OccluderWeights = make_dataclass(
    "OccluderWeights",
    [(name, float, field(default=weight)) for name, weight in default_occluder_weights().items()],
    namespace={
        "as_dict": _as_dict,
        "__post_init__": _check_weights,
        "__doc__": "Relative weights for choosing the one occluder of an occluded copy (normalised to sum 1; "
        "0 disables an occluder); one field per registered occluder. Whether a copy is occluded at all is "
        "`keep_clean`.",
    },
)
OccluderWeights.__module__ = __name__  # pickles (worker processes) and reprs as this module's class


@dataclass
class MedicalMaskConfig:
    types: list[str] = field(default_factory=lambda: list(MASK_TYPES))
    templates_dir: Optional[Path] = None  # MaskTheFace folder (masks.cfg + templates/); None: ../shared
    turn_threshold: float = 0.12  # |nose offset| / inter-ocular distance above which _left/_right is used
    brightness: tuple[float, float] = (0.9, 1.05)
    recolor_cloth: float = 0.5  # probability of recolouring the (black) cloth mask

    def __post_init__(self) -> None:
        # types are checked against the templates' masks.cfg when the occluder is built
        check_range("turn_threshold", self.turn_threshold, lo=0.0)
        check_interval("brightness", self.brightness, lo=0.0, lo_open=True)
        check_range("recolor_cloth", self.recolor_cloth, lo=0.0, hi=1.0)


@dataclass
class RealMaskConfig:
    """The `real_mask` occluder (issue 12): MaskTheFace templates with real colours, fit slack,
    face-matched lighting, folds, soft edges and straps (occtool.augment.occluders.real_mask)."""

    types: list[str] = field(default_factory=lambda: list(REAL_MASK_TYPES))
    templates_dir: Optional[Path] = None  # MaskTheFace folder; None: ../shared
    turn_threshold: float = 0.12
    recolor: float = 0.75  # probability of repainting in a real mask colour (keeping the shading)
    patterns: float = 0.25  # of the repainted: probability of a two-colour pattern
    lift: tuple[float, float] = (0.05, 0.35)  # top edge raised up the nose bridge (eye->mouth distances)
    widen: tuple[float, float] = (1.05, 1.4)  # width factor of the fit (real masks wrap round the cheeks)
    drop: tuple[float, float] = (-0.05, 0.12)  # chin anchor moved down (eye->mouth distances)
    jitter: float = 0.04  # per-anchor jitter (inter-ocular distances)
    relight: tuple[float, float] = (0.4, 1.0)  # strength of the face's own low-pass shading (0: none)
    folds: tuple[float, float] = (0.0, 0.08)  # pleat shading amplitude
    edge_blur: tuple[float, float] = (0.0, 0.03)  # alpha edge blur sigma (inter-ocular distances)
    straps: float = 0.5  # probability of ear loops

    def __post_init__(self) -> None:
        check_range("turn_threshold", self.turn_threshold, lo=0.0)
        check_range("recolor", self.recolor, lo=0.0, hi=1.0)
        check_range("patterns", self.patterns, lo=0.0, hi=1.0)
        check_interval("lift", self.lift, lo=0.0, hi=0.6)
        check_interval("widen", self.widen, lo=0.5, hi=2.0)
        check_interval("drop", self.drop, lo=-0.3, hi=0.3)
        check_range("jitter", self.jitter, lo=0.0, hi=0.2)
        check_interval("relight", self.relight, lo=0.0, hi=1.0)
        check_interval("folds", self.folds, lo=0.0, hi=0.5)
        check_interval("edge_blur", self.edge_blur, lo=0.0, hi=0.2)
        check_range("straps", self.straps, lo=0.0, hi=1.0)


@dataclass
class RectanglesConfig:
    count: tuple[int, int] = (1, 3)
    size: tuple[float, float] = (0.15, 0.45)  # side as a fraction of the image side
    fills: list[str] = field(default_factory=lambda: ["solid", "noise"])

    def __post_init__(self) -> None:
        check_interval("count", self.count, lo=1)
        check_interval("size", self.size, lo=0.0, hi=1.0, lo_open=True)
        check_subset("fills", self.fills, RECT_FILLS, allow_empty=False)


@dataclass
class TransparentConfig:
    opacity: tuple[float, float] = (0.3, 0.7)  # blend opacity where the face shows through; visibility = 1 - opacity

    def __post_init__(self) -> None:
        check_interval("opacity", self.opacity, lo=0.0, hi=1.0, lo_open=True, hi_open=True)


@dataclass
class SynthesisConfig:
    weights: OccluderWeights = field(default_factory=OccluderWeights)
    keep_clean: float = 0.1  # fraction of copies left unoccluded (occluder "none", visibility all 1)
    medical_mask: MedicalMaskConfig = field(default_factory=MedicalMaskConfig)
    real_mask: RealMaskConfig = field(default_factory=RealMaskConfig)
    rectangles: RectanglesConfig = field(default_factory=RectanglesConfig)
    transparent: TransparentConfig = field(default_factory=TransparentConfig)
    # image-level degradations after occlusion (blur, low resolution, JPEG, noise, colour), off by
    # default (p 0); occtool.augment.degrade
    degrade: DegradeConfig = field(default_factory=DegradeConfig)

    def __post_init__(self) -> None:
        check_range("keep_clean", self.keep_clean, lo=0.0, hi=1.0)


@dataclass
class AugmentConfig(SynthesisConfig):
    copies: int = 1  # occluded copies per source image (each its own draw)
    seed: int = 0
    workers: int = 2  # processes; results do not depend on it
    mask_size: tuple[int, int] = (7, 7)  # feature-resolution mask (H, W) written as .npy
    image_format: Literal["png", "jpg"] = "png"  # png: lossless (mask agrees with pixels); jpg: smaller
    jpeg_quality: int = 95
    missing_landmarks: Literal["error", "template"] = "error"  # image without a row in --landmarks
    keypoint_threshold: float = 0.5  # landmark covered (COCO 1) when visibility there < this

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("copies", self.copies, lo=1)
        check_range("workers", self.workers, lo=0)  # 0 or 1: in this process
        if min(self.mask_size) < 1:
            raise ConfigValueError("mask_size", "[H, W], integers >= 1", list(self.mask_size))
        check_range("jpeg_quality", self.jpeg_quality, lo=1, hi=100)
        check_range("keypoint_threshold", self.keypoint_threshold, lo=0.0, hi=1.0)
