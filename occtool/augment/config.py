"""Configs of the occlusion synthesis and of `occtool augment` (plain dataclasses, no heavy imports).

`SynthesisConfig` is what `OcclusionSynthesizer` (and so training on the fly) needs;
`AugmentConfig` extends it with the batch command's settings. Override any key with
`--set weights.hand=0`, `--set rectangles.count=[1,2]`, `--set transparent.opacity=[0.4,0.6]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, Optional

OCCLUDER_NAMES = (
    "medical_mask",
    "rectangles",
    "sunglasses",
    "hand",
    "scarf",
    "eyeglasses",
    "steam",
    "liquid",
    "visor",
)
OPAQUE_OCCLUDERS = ("medical_mask", "rectangles", "sunglasses", "hand", "scarf")
TRANSPARENT_OCCLUDERS = ("eyeglasses", "steam", "liquid", "visor")
MEDICAL_MASK_TYPES = ("surgical", "surgical_blue", "surgical_green", "N95", "KN95", "cloth", "gas")


@dataclass
class OccluderWeights:
    """Relative weights for choosing the one occluder of an occluded copy (normalised to sum 1;
    0 disables an occluder). Whether a copy is occluded at all is `keep_clean`."""

    medical_mask: float = 0.3
    rectangles: float = 0.1
    sunglasses: float = 0.1
    hand: float = 0.1
    scarf: float = 0.08
    eyeglasses: float = 0.08
    steam: float = 0.08
    liquid: float = 0.08
    visor: float = 0.08

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass
class MedicalMaskConfig:
    types: list[str] = field(default_factory=lambda: list(MEDICAL_MASK_TYPES))
    templates_dir: Optional[Path] = None  # MaskTheFace folder (masks.cfg + templates/); None: ../shared
    turn_threshold: float = 0.12  # |nose offset| / inter-ocular distance above which _left/_right is used
    brightness: tuple[float, float] = (0.9, 1.05)
    recolor_cloth: float = 0.5  # probability of recolouring the (black) cloth mask


@dataclass
class RectanglesConfig:
    count: tuple[int, int] = (1, 3)
    size: tuple[float, float] = (0.15, 0.45)  # side as a fraction of the image side
    fills: list[str] = field(default_factory=lambda: ["solid", "noise"])


@dataclass
class TransparentConfig:
    opacity: tuple[float, float] = (0.3, 0.7)  # blend opacity where the face shows through; visibility = 1 - opacity


@dataclass
class SynthesisConfig:
    weights: OccluderWeights = field(default_factory=OccluderWeights)
    keep_clean: float = 0.1  # fraction of copies left unoccluded (occluder "none", visibility all 1)
    medical_mask: MedicalMaskConfig = field(default_factory=MedicalMaskConfig)
    rectangles: RectanglesConfig = field(default_factory=RectanglesConfig)
    transparent: TransparentConfig = field(default_factory=TransparentConfig)


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
