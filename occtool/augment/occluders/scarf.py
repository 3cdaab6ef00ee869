"""Opaque occluder: a scarf pulled up over the lower face, with a fabric pattern and folds."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from occtool.augment.base import Occluder, coverage, smooth_noise
from occtool.augment.occluders.registry import register_occluder


SCARF_PATTERNS = ("plain", "stripes", "plaid", "knit")


@register_occluder(default_weight=0.08)
class Scarf(Occluder):
    """A scarf pulled up over the lower face: wavy top edge between the nose and the mouth, down
    to the bottom of the image, with a fabric pattern (plain, stripes, plaid, knit) and folds."""

    name = "scarf"
    occlusion_class = "opaque"

    def __init__(self, *, patterns: Sequence[str] = SCARF_PATTERNS, top: tuple[float, float] = (0.35, 0.85), p: float = 1.0):
        super().__init__(p=p)
        bad = [x for x in patterns if x not in SCARF_PATTERNS]
        if bad or not patterns:
            raise ValueError(f"scarf.patterns: expected some of {', '.join(SCARF_PATTERNS)}, got {list(patterns)}")
        self.patterns = tuple(patterns)
        self.top = (float(top[0]), float(top[1]))

    def _apply(self, image, frame, rng):
        shape = image.shape[:2]
        v_top = rng.uniform(*self.top)
        lift = rng.uniform(0.0, 0.3)
        amp, freq, phase = rng.uniform(0.01, 0.05), rng.uniform(2, 5), rng.uniform(0, 2 * np.pi)
        us = np.linspace(-3.0, 3.0, 61)
        top = v_top - lift * np.clip(us / 1.6, -1.5, 1.5) ** 2 + amp * np.sin(freq * us + phase)
        edge = np.stack([us, top], axis=1)
        poly = np.concatenate([edge, np.array([[3.0, 8.0], [-3.0, 8.0]])])
        alpha = coverage(shape, [frame.to_img(poly)])

        u, v = frame.uv_grid(shape)
        top_at = np.interp(u, us, top).astype(np.float32)
        depth = (v - top_at) * frame.h / frame.d  # distance below the top edge, in d
        hue = rng.uniform(0, 180)
        base = _hsv_colour(hue, rng.uniform(0.2, 0.8), rng.uniform(70, 230))
        second = _hsv_colour((hue + rng.uniform(30, 150)) % 180, rng.uniform(0.2, 0.8), rng.uniform(40, 230))
        pattern = self.patterns[int(rng.integers(len(self.patterns)))]
        xs, ys = u, depth  # fabric coordinates (d units)
        if pattern == "stripes":
            period = rng.uniform(0.15, 0.4)
            band = ((ys / period + rng.uniform(0, 1)) % 1.0) < rng.uniform(0.3, 0.6)
            colour = np.where(band[..., None], second, base)
        elif pattern == "plaid":
            period = rng.uniform(0.2, 0.45)
            bx = ((xs / period) % 1.0) < 0.35
            by = ((ys / period) % 1.0) < 0.35
            mix = (bx.astype(np.float32) + by.astype(np.float32))[..., None] * 0.35
            colour = base * (1 - mix) + second * mix
        elif pattern == "knit":
            ribs = 0.85 + 0.15 * np.abs(np.sin(np.pi * xs / rng.uniform(0.05, 0.1)))
            colour = base * ribs[..., None]
        else:
            colour = np.broadcast_to(base, shape + (3,))
        folds = 1.0 + 0.12 * np.sin(2 * np.pi * (xs * rng.uniform(0.8, 2.0) + 0.4 * ys) + rng.uniform(0, 6.28))
        roll = 1.0 + 0.1 * np.exp(-(((ys - 0.08) / 0.06) ** 2)) - 0.15 * np.exp(-(((ys - 0.2) / 0.05) ** 2))
        light = 0.9 + 0.2 * smooth_noise(rng, shape, 3)
        grain = rng.normal(0.0, 4.0, size=shape + (1,)).astype(np.float32)
        layer = colour * (folds * roll * light)[..., None] + grain
        return np.clip(layer, 0, 255), alpha, pattern


def _hsv_colour(h: float, s: float, v: float) -> np.ndarray:
    hsv = np.array([[[h, s * 255, v]]], np.float32).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


__all__ = ["SCARF_PATTERNS", "Scarf"]
