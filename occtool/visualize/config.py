"""Configs of `visualize-occlusion maps` and `visualize-occlusion pair` (defaults <- YAML <- CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from occtool.errors import ConfigError
from occtool.visualize.regions import REGION_NAMES

GROUP_BY = ("auto", "none", "folder", "occluder")
EXPECT = ("occluded", "visible")


def _at_least(name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, got {value!r}")


@dataclass
class MapsConfig:
    checkpoint: Optional[str] = None
    images: list[str] = field(default_factory=list)  # folders (any depth) and/or image files
    masks: Optional[str] = None  # ground-truth tree mirroring the images (.png, 255 = visible)
    manifests: list[str] = field(default_factory=list)  # augment manifest.jsonl files: occluder types (and masks)
    group_by: str = "auto"  # auto: occluder with a manifest, else none; folder: the parent folder
    max_panels: int = 64  # per-face panels drawn (the worst cases first when `worst` > 0)
    sheet_max: int = 240  # faces on the contact sheet (an even sample when there are more)
    sheet_columns: int = 12
    tile_size: int = 96  # pixels per face on the contact sheets
    worst: int = 0  # > 0: a contact sheet of the N worst faces in `region`
    region: str = "lower"  # eyes, nose, lower, all (see occtool.visualize.regions)
    expect: Optional[str] = None  # without ground truth: what `region` should be (occluded | visible)
    dpi: Optional[int] = None  # figure resolution (None: each figure's own, 90-100)
    batch_size: int = 64
    max_bad: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.dpi is not None:
            _at_least("dpi", self.dpi, 30)
        if self.group_by not in GROUP_BY:
            raise ConfigError(f"group_by: expected one of {', '.join(GROUP_BY)}, got {self.group_by!r}")
        if self.region not in REGION_NAMES:
            raise ConfigError(f"region: expected one of {', '.join(REGION_NAMES)}, got {self.region!r}")
        if self.expect is not None and self.expect not in EXPECT:
            raise ConfigError(f"expect: expected one of {', '.join(EXPECT)}, got {self.expect!r}")
        for name, low in (("max_panels", 0), ("sheet_max", 1), ("sheet_columns", 1), ("worst", 0),
                          ("batch_size", 1), ("max_bad", 0)):
            _at_least(name, getattr(self, name), low)
        _at_least("tile_size", self.tile_size, 16)
        if self.group_by == "occluder" and not self.manifests:
            raise ConfigError("group_by occluder needs --manifest (the occluder of every image)")


@dataclass
class PairConfig:
    checkpoint: Optional[str] = None
    probe: Optional[str] = None  # one pair: probe and gallery image
    gallery: Optional[str] = None
    pairs: Optional[str] = None  # a file of pairs: "probe gallery" per line (whitespace, tab or comma)
    from_eval: Optional[str] = None  # an eval-gallery output folder (scores.csv + config.yaml)
    worst: int = 5  # with from_eval: the N hardest false matches and the N hardest misses
    method: Optional[str] = None  # with from_eval: whose scores pick the pairs (default: best available)
    top_k: int = 10  # QAConv correspondences drawn
    flip: bool = True  # as eval-gallery: flip test-time augmentation for the cosine methods
    max_panels: int = 64
    dpi: Optional[int] = None  # figure resolution (None: 90)
    batch_size: int = 64
    max_bad: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.dpi is not None:
            _at_least("dpi", self.dpi, 30)
        for name, low in (("worst", 1), ("top_k", 1), ("max_panels", 0), ("batch_size", 1), ("max_bad", 0)):
            _at_least(name, getattr(self, name), low)
        given = [n for n in ("probe", "pairs", "from_eval") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ConfigError(f"give one of PROBE GALLERY, --pairs or --from-eval, not {' and '.join(given)}")
        if (self.probe is None) != (self.gallery is None):
            raise ConfigError("one pair needs both PROBE and GALLERY images")
