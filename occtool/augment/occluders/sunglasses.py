"""Opaque occluder: dark sunglasses (lenses with gradient, glare or a mirror finish; frame, bridge, temples)."""

from __future__ import annotations

import numpy as np

from occtool.augment.base import Occluder, coverage, smooth_noise
from occtool.augment.occluders.common import FRAME_COLOURS, diagonal_glare, frame_coverage, glasses_geometry
from occtool.augment.occluders.registry import register_occluder


@register_occluder(default_weight=0.1)
class Sunglasses(Occluder):
    """Dark opaque lenses over the eyes, with frame, bridge and temple arms."""

    name = "sunglasses"
    occlusion_class = "opaque"

    LENS_COLOURS = np.array([[12, 12, 14], [35, 25, 15], [25, 35, 28], [30, 45, 85], [60, 40, 20], [70, 70, 75]], np.float32)

    def _apply(self, image, frame, rng):
        shape = image.shape[:2]
        lenses, bridge, temples, stroke = glasses_geometry(frame, rng, sun=True)
        lens_cov = coverage(shape, lenses)
        frame_cov = frame_coverage(shape, lenses, bridge, temples, stroke)
        u, v = frame.uv_grid(shape)
        base = self.LENS_COLOURS[int(rng.integers(len(self.LENS_COLOURS)))] * rng.uniform(0.8, 1.2)
        gradient = np.clip(0.7 + 0.9 * (v * frame.h / frame.d + 0.3), 0.6, 1.6)[..., None]  # lighter at the bottom
        glare = diagonal_glare(shape, frame, rng)[..., None] * rng.uniform(40, 110)
        lens_layer = base * gradient + glare
        if rng.random() < 0.25:  # mirrored lenses: a bright blue/silver reflection
            sky = smooth_noise(rng, shape, 3)[..., None]
            lens_layer = lens_layer * 0.4 + (np.array([120, 150, 190], np.float32) * (0.6 + 0.6 * sky)) * 0.6
        frame_colour = FRAME_COLOURS[int(rng.integers(len(FRAME_COLOURS)))]
        layer = lens_layer * (1 - frame_cov[..., None]) + frame_colour * frame_cov[..., None]
        alpha = np.maximum(lens_cov, frame_cov)
        return np.clip(layer, 0, 255), alpha, "sunglasses"


__all__ = ["Sunglasses"]
