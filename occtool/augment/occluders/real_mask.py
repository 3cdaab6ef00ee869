"""Real-looking face masks (issue 12): the MaskTheFace templates of `medical_mask`, made to look
like the masks people wear in photos rather than one pasted template.

What it adds to `medical_mask` (each a setting of `RealMaskConfig`, so that `medical_mask`, and
with it the acceptance protocol's masked probes, does not change):

- colour and texture: with probability `recolor` the template is repainted in a real mask colour
  (black, navy, white, greys, light blue, pinks, ...; `patterns` of them in stripes, checks, dots
  or a print) keeping the template's own shading (pleats, folds);
- fit: the six anchors get random slack (`lift`: a higher top edge up the nose bridge; `widen`,
  `drop`: a wider fit, a lower or higher chin; `jitter` per anchor), so the mask does not sit
  where one template puts it;
- lighting: the face's own low-pass luminance (`relight` strength) and overall brightness shade
  the mask, so it is lit like the face it is on; pleat-like `folds`; fine fabric grain;
- soft edges (`edge_blur`, a fraction of the inter-ocular distance) and ear-loop `straps`.

Opaque: visibility = 1 - alpha exactly (the blurred edge and straps included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from occtool.augment.base import FaceFrame, Occluder, luminance, region_stats, smooth_noise, stroke_polyline
from occtool.augment.occluders.medical_mask import (
    default_templates_dir,
    face_anchor_uv,
    load_mask_config,
    template_variant,
    warp_template,
)
from occtool.augment.occluders.registry import register_occluder
from occtool.errors import DataError

REAL_MASK_TYPES = ("surgical", "surgical_blue", "surgical_green", "N95", "KN95", "cloth")
REAL_MASK_PATTERNS = ("stripes", "checks", "dots", "print")

# Colours of masks seen in photos (RGB), with relative frequencies: dark masks are common.
MASK_COLOURS = np.array(
    [[22, 22, 25], [35, 35, 40], [28, 32, 52], [60, 62, 70], [120, 122, 128], [175, 178, 182],
     [236, 236, 232], [246, 244, 240], [214, 226, 238], [150, 190, 225], [95, 150, 205], [140, 200, 200],
     [235, 190, 200], [200, 170, 215], [225, 210, 185], [160, 60, 70]],
    np.float32,
)
_COLOUR_P = np.array([8, 5, 4, 3, 2, 2, 6, 4, 3, 5, 3, 1, 2, 1, 1, 1], np.float64)
_COLOUR_P /= _COLOUR_P.sum()


def _ranged(name: str, pair, lo: float, hi: float | None = None) -> tuple[float, float]:
    a, b = float(pair[0]), float(pair[1])
    if not (lo <= a <= b and (hi is None or b <= hi)):
        raise ValueError(f"{name}: expected {lo} <= min <= max{'' if hi is None else f' <= {hi}'}, got {tuple(pair)}")
    return a, b


def _probability(name: str, value) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value}")
    return float(value)


@register_occluder(default_weight=0.0)
class RealMask(Occluder):
    """A face mask from the MaskTheFace templates with real-world colours, patterns, fit slack,
    face-matched lighting, folds, soft edges and ear loops (opaque; visibility = 1 - alpha)."""

    name = "real_mask"
    occlusion_class = "opaque"

    def __init__(
        self,
        *,
        types: Sequence[str] = REAL_MASK_TYPES,
        templates_dir: str | Path | None = None,
        turn_threshold: float = 0.12,
        recolor: float = 0.75,
        patterns: float = 0.25,
        lift: tuple[float, float] = (0.05, 0.35),
        widen: tuple[float, float] = (1.05, 1.4),
        drop: tuple[float, float] = (-0.05, 0.12),
        jitter: float = 0.04,
        relight: tuple[float, float] = (0.4, 1.0),
        folds: tuple[float, float] = (0.0, 0.08),
        edge_blur: tuple[float, float] = (0.0, 0.03),
        straps: float = 0.5,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        root = Path(templates_dir) if templates_dir is not None else default_templates_dir()
        self.templates = load_mask_config(str(root))
        types = tuple(types)
        unknown = [t for t in types if t not in self.templates]
        if unknown or not types:
            raise DataError(f"real mask types {unknown or '(none)'} not in {root}/masks.cfg")
        self.types = types
        self.turn_threshold = float(turn_threshold)
        self.recolor = _probability("recolor", recolor)
        self.patterns = _probability("patterns", patterns)
        self.lift = _ranged("lift", lift, 0.0, 0.6)
        self.widen = _ranged("widen", widen, 0.5, 2.0)
        self.drop = _ranged("drop", drop, -0.3, 0.3)
        if not 0.0 <= float(jitter) <= 0.2:
            raise ValueError(f"jitter: expected 0 <= jitter <= 0.2 (inter-ocular distances), got {jitter}")
        self.jitter = float(jitter)
        self.relight = _ranged("relight", relight, 0.0, 1.0)
        self.folds = _ranged("folds", folds, 0.0, 0.5)
        self.edge_blur = _ranged("edge_blur", edge_blur, 0.0, 0.2)
        self.straps = _probability("straps", straps)

    @classmethod
    def from_config(cls, config, *, p: float = 1.0) -> "RealMask":
        if config is None:
            return cls(p=p)
        m = config.real_mask
        return cls(types=m.types, templates_dir=m.templates_dir, turn_threshold=m.turn_threshold, recolor=m.recolor,
                   patterns=m.patterns, lift=tuple(m.lift), widen=tuple(m.widen), drop=tuple(m.drop), jitter=m.jitter,
                   relight=tuple(m.relight), folds=tuple(m.folds), edge_blur=tuple(m.edge_blur), straps=m.straps, p=p)

    def _apply(self, image, frame: FaceFrame, rng):
        shape = image.shape[:2]
        mask_type = self.types[int(rng.integers(len(self.types)))]
        variant = template_variant(mask_type, frame.nose_offset, self.turn_threshold, self.templates)
        png, anchors = self.templates[variant]
        uv = self._slack_anchors(frame, rng)
        layer, alpha = warp_template(png, anchors, frame.to_img(uv), shape, what=f"{variant} (real_mask)")
        detail = variant
        if rng.random() < self.recolor:
            layer, how = self._recolour(layer, alpha, frame, rng)
            detail += f"+{how}"
        layer = self._light(layer, alpha, image, frame, rng)
        sigma = rng.uniform(*self.edge_blur) * frame.d
        if sigma > 0.25:
            alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
        if rng.random() < self.straps:
            layer, alpha = self._straps(layer, alpha, uv, frame, rng)
            detail += "+straps"
        return np.clip(layer, 0, 255), np.clip(alpha, 0.0, 1.0), detail

    def _slack_anchors(self, frame: FaceFrame, rng) -> np.ndarray:
        """Anchors a..f (face frame) with a higher top, a wider / lower fit and jitter."""
        uv, _ = face_anchor_uv(frame)
        uv = uv.copy()
        centre_u = uv[1, 0]
        uv[:, 0] = centre_u + (uv[:, 0] - centre_u) * rng.uniform(*self.widen)
        uv[1, 1] -= rng.uniform(*self.lift)  # b: the top edge up the nose bridge
        uv[[0, 2], 1] -= rng.uniform(0.0, 0.5) * (self.lift[1])  # the sides follow part of it
        uv[4, 1] += rng.uniform(*self.drop)  # e: the bottom edge under the chin
        uv += rng.normal(0.0, self.jitter, size=uv.shape) * np.array([1.0, frame.d / frame.h])
        return uv

    def _recolour(self, layer, alpha, frame: FaceFrame, rng):
        """Repaint in a real colour (or a two-colour pattern), keeping the template's shading."""
        inside = alpha > 0.5
        grey = luminance(layer)
        ref = float(np.median(grey[inside])) if inside.any() else 128.0
        detail = np.clip(grey / max(ref, 1.0), 0.4, 1.5) ** rng.uniform(0.5, 1.0)
        colour = MASK_COLOURS[int(rng.choice(len(MASK_COLOURS), p=_COLOUR_P))] * rng.uniform(0.9, 1.1, size=3)
        paint = np.broadcast_to(colour.astype(np.float32), layer.shape).copy()
        how = "recolored"
        if rng.random() < self.patterns:
            kind = REAL_MASK_PATTERNS[int(rng.integers(len(REAL_MASK_PATTERNS)))]
            second = MASK_COLOURS[int(rng.integers(len(MASK_COLOURS)))].astype(np.float32)
            paint = _pattern(kind, paint, second, frame, shape=layer.shape[:2], rng=rng)
            how = kind
        return paint * detail[..., None], how

    def _light(self, layer, alpha, image, frame: FaceFrame, rng):
        """Shade like the face: its overall brightness, its low-pass luminance, pleats, grain."""
        shape = image.shape[:2]
        _, lum = region_stats(image, frame, (-0.8, 0.8), (0.1, 1.0))
        shade = float(np.clip((lum / 150.0) ** rng.uniform(0.3, 0.8), 0.45, 1.1))
        face = cv2.GaussianBlur(luminance(image.astype(np.float32)), (0, 0), 0.35 * frame.d)
        inside = alpha > 0.5
        ref = float(face[inside].mean()) if inside.any() else float(face.mean())
        ratio = np.clip(face / max(ref, 1.0), 0.5, 1.6) ** rng.uniform(*self.relight)
        _, v = frame.uv_grid(shape)
        pleats = 1.0 + rng.uniform(*self.folds) * np.sin(2 * np.pi * v * rng.uniform(3.0, 6.0) + rng.uniform(0, 6.28))
        grain = 1.0 + 0.06 * (smooth_noise(rng, shape, max(4, int(frame.d / 3))) - 0.5)
        return layer * (shade * ratio * pleats * grain)[..., None]

    def _straps(self, layer, alpha, uv, frame: FaceFrame, rng):
        """Ear loops from the mask's sides (anchors a, d / c, f) back towards the ears."""
        canvas = np.zeros(alpha.shape, np.uint8)
        width = max(1.0, rng.uniform(0.02, 0.05) * frame.d)
        for top, bottom, side in ((0, 3, -1.0), (2, 5, 1.0)):
            ear = np.array([side * rng.uniform(1.25, 1.5), rng.uniform(0.05, 0.35)])
            for k in (top, bottom):
                start = uv[k] + np.array([-side * 0.04, 0.0])
                mid = (start + ear) / 2.0 + np.array([0.0, rng.uniform(-0.05, 0.05)])
                stroke_polyline(canvas, frame.to_img(np.stack([start, mid, ear])), width)
        strap = canvas.astype(np.float32) / 255.0
        colour = np.median(layer[alpha > 0.5], axis=0) if (alpha > 0.5).any() else np.full(3, 230.0, np.float32)
        new_alpha = np.maximum(alpha, strap)
        take = strap > alpha
        layer = layer.copy()
        layer[take] = colour * 0.9
        return layer, new_alpha


def _pattern(kind: str, base: np.ndarray, second: np.ndarray, frame: FaceFrame, *, shape, rng) -> np.ndarray:
    """A two-colour fabric pattern in face-frame coordinates (d units) over `base` [H, W, 3]."""
    u, v = frame.uv_grid(shape)
    y = v * frame.h / frame.d
    period = rng.uniform(0.08, 0.3)
    if kind == "stripes":
        ang = rng.uniform(0, np.pi)
        t = u * np.cos(ang) + y * np.sin(ang)
        mix = (((t / period) + rng.uniform(0, 1)) % 1.0 < rng.uniform(0.3, 0.6)).astype(np.float32)
    elif kind == "checks":
        mix = 0.5 * ((u / period) % 1.0 < 0.5) + 0.5 * ((y / period) % 1.0 < 0.5)
    elif kind == "dots":
        du, dy = (u / period) % 1.0 - 0.5, (y / period) % 1.0 - 0.5
        mix = (du * du + dy * dy < rng.uniform(0.04, 0.12)).astype(np.float32)
    else:  # "print": blotches (a logo, a cartoon, a camouflage)
        mix = (smooth_noise(rng, shape, max(3, int(6 / max(period * 10, 0.5)))) > rng.uniform(0.55, 0.75)).astype(np.float32)
    mix = np.asarray(mix, np.float32)[..., None]
    return base * (1.0 - mix) + second * mix


__all__ = ["MASK_COLOURS", "REAL_MASK_PATTERNS", "REAL_MASK_TYPES", "RealMask"]
