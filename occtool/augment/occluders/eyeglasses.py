"""Transparent occluder: clear eyeglasses (thin opaque frame; tinted lenses with glare the eye shows through)."""

from __future__ import annotations

import numpy as np

from occtool.augment.base import FaceFrame, coverage, smooth_noise
from occtool.augment.occluders.common import FRAME_COLOURS, TransparentOccluder, diagonal_glare, frame_coverage, glasses_geometry
from occtool.augment.occluders.registry import register_occluder


@register_occluder(default_weight=0.08)
class Eyeglasses(TransparentOccluder):
    """Clear glasses: thin opaque frame; lenses with a tint and a glare/reflection of opacity in
    `opacity` (the eye shows through)."""

    name = "eyeglasses"
    TINTS = np.array([[215, 225, 235], [235, 235, 235], [200, 220, 200], [225, 210, 190], [190, 205, 235]], np.float32)

    def _apply(self, image, frame: FaceFrame, rng):
        shape = image.shape[:2]
        lenses, bridge, temples, stroke = glasses_geometry(frame, rng, sun=False)
        lens_cov = coverage(shape, lenses)
        frame_cov = frame_coverage(shape, lenses, bridge, temples, stroke)
        lo, hi = self.opacity
        level = rng.uniform(lo, hi)
        reflection = smooth_noise(rng, shape, int(rng.integers(2, 5)))
        glare = diagonal_glare(shape, frame, rng)
        pattern = np.clip(0.5 * reflection + 0.8 * glare, 0.0, 1.0)
        lens_alpha = np.clip(level + (pattern - 0.4) * 0.3, lo, hi)
        tint = self.TINTS[int(rng.integers(len(self.TINTS)))]
        sky = np.array([245, 248, 255], np.float32)
        lens_layer = tint * (1 - pattern[..., None]) + sky * pattern[..., None]
        frame_colour = FRAME_COLOURS[int(rng.integers(len(FRAME_COLOURS)))]
        layer = lens_layer * (1 - frame_cov[..., None]) + frame_colour * frame_cov[..., None]
        alpha = np.maximum(lens_cov * lens_alpha, frame_cov)
        return layer, alpha, "eyeglasses"


__all__ = ["Eyeglasses"]
