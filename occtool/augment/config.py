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

from occtool.augment.occluders import MASK_TYPES, default_occluder_weights, list_occluders

# Derived from the occluder registry (occtool.augment.occluders): registration order.
OCCLUDER_NAMES = tuple(list_occluders())
OPAQUE_OCCLUDERS = tuple(list_occluders("opaque"))
TRANSPARENT_OCCLUDERS = tuple(list_occluders("transparent"))


def _as_dict(self) -> dict[str, float]:
    return {f.name: float(getattr(self, f.name)) for f in fields(self)}


# One float field per registered occluder, defaulting to its registered weight, so a new
# occluder file brings its `weights.<name>` key (YAML / --set) with it.
OccluderWeights = make_dataclass(
    "OccluderWeights",
    [(name, float, field(default=weight)) for name, weight in default_occluder_weights().items()],
    namespace={
        "as_dict": _as_dict,
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
