"""Pieces several occluder families share: the transparent base class (opacity range),
glasses geometry (sunglasses, eyeglasses) and the diagonal glare (also the visor)."""

from __future__ import annotations

import numpy as np

from occtool.augment.base import FaceFrame, Occluder, stroke_polyline, superellipse


def check_opacity(opacity) -> tuple[float, float]:
    lo, hi = float(opacity[0]), float(opacity[1])
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError(f"opacity: expected 0 < min <= max < 1, got {tuple(opacity)}")
    return lo, hi


class TransparentOccluder(Occluder):
    """Base of the transparent families: an `opacity` (min, max) range in (0, 1); visibility
    = 1 - opacity where the face shows through. `from_config` reads `transparent.opacity`."""

    occlusion_class = "transparent"

    def __init__(self, *, opacity: tuple[float, float] = (0.3, 0.7), p: float = 1.0):
        super().__init__(p=p)
        self.opacity = check_opacity(opacity)

    @classmethod
    def from_config(cls, config, *, p: float = 1.0):
        if config is None:
            return cls(p=p)
        return cls(opacity=tuple(config.transparent.opacity), p=p)


# ---------------------------------------------------------------------------------------------
# Glasses geometry (sunglasses, eyeglasses)


def glasses_geometry(frame: FaceFrame, rng: np.random.Generator, *, sun: bool):
    """Random lens polygons (image coords), frame strokes and their stroke width (pixels).

    Lenses are centred near the eyes (face frame, units of the inter-ocular distance), shaped as
    superellipses (round to rectangular; aviators with a deeper bottom), joined by a bridge and
    with temple arms towards the ears.
    """
    a = rng.uniform(0.36, 0.46) if sun else rng.uniform(0.33, 0.44)
    b_top = rng.uniform(0.2, 0.3)
    b_bot = b_top * (rng.uniform(1.0, 1.4) if sun else rng.uniform(0.9, 1.15))
    n = rng.uniform(2.0, 4.5)
    dx = rng.uniform(0.0, 0.04)
    vc = rng.uniform(-0.02, 0.06)
    tilt = np.radians(rng.uniform(-4, 4))
    lenses = []
    for side in (-1.0, 1.0):
        pts = superellipse((0.0, 0.0), a, b_top, b_bot, n, points=56)
        c, s = np.cos(side * tilt), np.sin(side * tilt)
        pts = pts @ np.array([[c, s], [-s, c]])
        pts[:, 0] += side * (0.5 + dx)
        pts[:, 1] += vc
        lenses.append(frame.to_img_iso(pts))
    inner = 0.5 + dx - a
    bridge_v = vc - b_top * rng.uniform(0.3, 0.7)
    bridge = frame.to_img_iso(
        np.array([[-inner - 0.02, bridge_v], [-inner * 0.4, bridge_v - 0.04], [inner * 0.4, bridge_v - 0.04], [inner + 0.02, bridge_v]])
    )
    outer = 0.5 + dx + a
    temples = [
        frame.to_img_iso(np.array([[side * (outer - 0.02), vc - b_top * 0.6], [side * 1.45, vc - b_top * 0.45]]))
        for side in (-1.0, 1.0)
    ]
    stroke = frame.d * (rng.uniform(0.04, 0.08) if sun else rng.uniform(0.025, 0.055))
    return lenses, bridge, temples, max(1.0, stroke)


def frame_coverage(shape_hw, lenses, bridge, temples, stroke) -> np.ndarray:
    canvas = np.zeros(shape_hw, np.uint8)
    for lens in lenses:
        stroke_polyline(canvas, lens, stroke, closed=True)
    stroke_polyline(canvas, bridge, stroke * 1.2)
    for t in temples:
        stroke_polyline(canvas, t, stroke * 1.1)
    return canvas.astype(np.float32) / 255.0


FRAME_COLOURS = np.array([[15, 15, 18], [40, 28, 20], [150, 120, 60], [175, 175, 180], [90, 50, 30], [120, 20, 30]], np.float32)


def diagonal_glare(shape_hw, frame: FaceFrame, rng) -> np.ndarray:
    """A soft diagonal highlight streak in [0, 1] (float32 [H, W])."""
    u, v = frame.uv_grid(shape_hw)
    ang = np.radians(rng.uniform(30, 60)) * rng.choice([-1, 1])
    proj = u * np.cos(ang) + v * (frame.h / frame.d) * np.sin(ang)
    centre = rng.uniform(-0.5, 0.5)
    width = rng.uniform(0.06, 0.15)
    return np.exp(-(((proj - centre) / width) ** 2)).astype(np.float32)


__all__ = ["FRAME_COLOURS", "TransparentOccluder", "check_opacity", "diagonal_glare", "frame_coverage", "glasses_geometry"]
