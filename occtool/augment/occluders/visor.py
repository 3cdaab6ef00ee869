"""Transparent occluder: a tinted visor (face shield, eye band or upper-face visor) with a specular streak."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from occtool.augment.base import FaceFrame, coverage, superellipse
from occtool.augment.occluders.common import TransparentOccluder, diagonal_glare
from occtool.augment.occluders.registry import register_occluder


VISOR_STYLES = ("face_shield", "eye_band", "upper")


@register_occluder(default_weight=0.08)
class Visor(TransparentOccluder):
    """A tinted visor: face shield, goggle-like eye band, or upper-face visor; tint opacity in
    `opacity`, a vertical gradient and a specular streak."""

    name = "visor"
    TINTS = np.array(
        [[55, 55, 60], [40, 80, 160], [200, 130, 30], [40, 120, 70], [190, 90, 110], [200, 205, 215], [20, 20, 25]],
        np.float32,
    )

    def __init__(self, *, opacity: tuple[float, float] = (0.3, 0.7), styles: Sequence[str] = VISOR_STYLES, p: float = 1.0):
        super().__init__(opacity=opacity, p=p)
        bad = [s for s in styles if s not in VISOR_STYLES]
        if bad or not styles:
            raise ValueError(f"visor.styles: expected some of {', '.join(VISOR_STYLES)}, got {list(styles)}")
        self.styles = tuple(styles)

    def _apply(self, image, frame: FaceFrame, rng):
        shape = image.shape[:2]
        style = self.styles[int(rng.integers(len(self.styles)))]
        r = frame.h / frame.d  # v (h units) -> d units
        if style == "face_shield":
            top, bottom, half = -1.3, rng.uniform(1.6, 2.2) * r, rng.uniform(1.3, 1.7)
        elif style == "eye_band":
            top, bottom, half = rng.uniform(-0.5, -0.35), rng.uniform(0.25, 0.4), rng.uniform(1.1, 1.5)
        else:
            top, bottom, half = -1.3, rng.uniform(0.45, 0.6) * r, rng.uniform(1.2, 1.6)
        centre = (0.0, (top + bottom) / 2)
        poly = superellipse(centre, half, (bottom - top) / 2, (bottom - top) / 2, rng.uniform(3.0, 6.0), points=64)
        cov = coverage(shape, [frame.to_img_iso(poly)])
        lo, hi = self.opacity
        level = rng.uniform(lo, hi)
        u, v = frame.uv_grid(shape)
        vd = v * r
        grad = np.clip((vd - top) / max(bottom - top, 1e-3), 0.0, 1.0)
        slope = rng.uniform(0.0, 0.25)  # darker at the top
        glare = diagonal_glare(shape, frame, rng) * rng.uniform(0.0, 0.2)
        a = np.clip(level + slope * (0.5 - grad) + glare, lo, hi)
        tint = self.TINTS[int(rng.integers(len(self.TINTS)))] * rng.uniform(0.85, 1.15)
        layer = tint * (1.0 - glare[..., None] * 3) + 255.0 * glare[..., None] * 3
        return np.clip(layer, 0, 255), (cov * a).astype(np.float32), style


__all__ = ["VISOR_STYLES", "Visor"]
