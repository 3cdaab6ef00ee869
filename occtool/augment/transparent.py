"""Transparent occluders: eyeglass lenses with glare, steam/fog, liquid drips, a tinted visor.

Each paints a layer with an opacity in `opacity` (default 0.3-0.7) where the face shows through,
so visibility = 1 - opacity takes partial values there (eyeglass frames are the one opaque part).
The layer never copies the face's details at full strength: fog mixes a heavy blur of the face
with a fog colour, water drips refract (shift) the face under a highlight; the visibility is the
weight of the original pixel in the blend.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from occtool.augment.base import (
    FaceFrame,
    Occluder,
    capsule,
    coverage,
    edge_distance,
    fill_polygons,
    smooth_noise,
    superellipse,
)
from occtool.augment.opaque import FRAME_COLOURS, _diagonal_glare, _frame_coverage, glasses_geometry


def _check_opacity(opacity) -> tuple[float, float]:
    lo, hi = float(opacity[0]), float(opacity[1])
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError(f"opacity: expected 0 < min <= max < 1, got {tuple(opacity)}")
    return lo, hi


class _Transparent(Occluder):
    occlusion_class = "transparent"

    def __init__(self, *, opacity: tuple[float, float] = (0.3, 0.7), p: float = 1.0):
        super().__init__(p=p)
        self.opacity = _check_opacity(opacity)


class Eyeglasses(_Transparent):
    """Clear glasses: thin opaque frame; lenses with a tint and a glare/reflection of opacity in
    `opacity` (the eye shows through)."""

    name = "eyeglasses"
    TINTS = np.array([[215, 225, 235], [235, 235, 235], [200, 220, 200], [225, 210, 190], [190, 205, 235]], np.float32)

    def _apply(self, image, frame: FaceFrame, rng):
        shape = image.shape[:2]
        lenses, bridge, temples, stroke = glasses_geometry(frame, rng, sun=False)
        lens_cov = coverage(shape, lenses)
        frame_cov = _frame_coverage(shape, lenses, bridge, temples, stroke)
        lo, hi = self.opacity
        level = rng.uniform(lo, hi)
        reflection = smooth_noise(rng, shape, int(rng.integers(2, 5)))
        glare = _diagonal_glare(shape, frame, rng)
        pattern = np.clip(0.5 * reflection + 0.8 * glare, 0.0, 1.0)
        lens_alpha = np.clip(level + (pattern - 0.4) * 0.3, lo, hi)
        tint = self.TINTS[int(rng.integers(len(self.TINTS)))]
        sky = np.array([245, 248, 255], np.float32)
        lens_layer = tint * (1 - pattern[..., None]) + sky * pattern[..., None]
        frame_colour = FRAME_COLOURS[int(rng.integers(len(FRAME_COLOURS)))]
        layer = lens_layer * (1 - frame_cov[..., None]) + frame_colour * frame_cov[..., None]
        alpha = np.maximum(lens_cov * lens_alpha, frame_cov)
        return layer, alpha, "eyeglasses"


STEAM_REGIONS = ("face", "lower", "glasses")


class Steam(_Transparent):
    """Steam or fog: a cloudy whitish veil (blurred face mixed with a fog colour), over the whole
    face, rising from the mouth, or fogging the eye region."""

    name = "steam"

    def __init__(self, *, opacity: tuple[float, float] = (0.3, 0.7), regions: Sequence[str] = STEAM_REGIONS, p: float = 1.0):
        super().__init__(opacity=opacity, p=p)
        bad = [r for r in regions if r not in STEAM_REGIONS]
        if bad or not regions:
            raise ValueError(f"steam.regions: expected some of {', '.join(STEAM_REGIONS)}, got {list(regions)}")
        self.regions = tuple(regions)

    def _apply(self, image, frame: FaceFrame, rng):
        shape = image.shape[:2]
        region = self.regions[int(rng.integers(len(self.regions)))]
        u, v = frame.uv_grid(shape)
        vd = v * frame.h / frame.d  # vertical in d units
        if region == "face":
            r = np.exp(-((u / 1.6) ** 2 + ((vd - 0.5) / 1.8) ** 2) ** 2)
        elif region == "lower":
            v0 = rng.uniform(-0.2, 0.5)
            r = np.clip((v - v0) / 0.5, 0.0, 1.0) * np.exp(-((u / rng.uniform(0.9, 1.6)) ** 4))
        else:  # fogged eye region (glasses steaming up)
            r = np.exp(-((np.abs(u) - 0.5) ** 2 / 0.16 + vd**2 / 0.06) ** 2)
        clouds = smooth_noise(rng, shape, int(rng.integers(3, 7)))
        density = np.clip(0.9 + 0.7 * (clouds - 0.5), 0.3, 1.0)
        peak = rng.uniform(*self.opacity)
        alpha = np.clip(peak * r * density, 0.0, self.opacity[1]).astype(np.float32)
        sigma = max(1.0, frame.d * rng.uniform(0.08, 0.18))
        blur = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
        fog = np.array([rng.uniform(230, 255)] * 3, np.float32) + rng.uniform(-5, 5, size=3)
        layer = 0.25 * blur + 0.75 * fog
        return layer, alpha, region


LIQUIDS = {
    "water": None,  # refraction of the face, brightened
    "coffee": (95, 60, 35),
    "milk": (240, 238, 230),
    "juice": (235, 145, 35),
    "tea": (170, 110, 50),
}


class Liquid(_Transparent):
    """Drips running down the face (water, coffee, milk, juice, tea): tapered trails ending in a
    drop, plus a few droplets; water refracts the face under a specular highlight."""

    name = "liquid"

    def __init__(
        self,
        *,
        opacity: tuple[float, float] = (0.3, 0.7),
        liquids: Sequence[str] = tuple(LIQUIDS),
        drips: tuple[int, int] = (2, 6),
        p: float = 1.0,
    ):
        super().__init__(opacity=opacity, p=p)
        bad = [x for x in liquids if x not in LIQUIDS]
        if bad or not liquids:
            raise ValueError(f"liquid.liquids: expected some of {', '.join(LIQUIDS)}, got {list(liquids)}")
        if not 1 <= int(drips[0]) <= int(drips[1]):
            raise ValueError(f"liquid.drips: expected 1 <= min <= max, got {tuple(drips)}")
        self.liquids = tuple(liquids)
        self.drips = (int(drips[0]), int(drips[1]))

    def _apply(self, image, frame: FaceFrame, rng):
        shape = image.shape[:2]
        kind = self.liquids[int(rng.integers(len(self.liquids)))]
        n = int(rng.integers(self.drips[0], self.drips[1] + 1))
        lo, hi = self.opacity
        alpha = np.zeros(shape, np.float32)
        canvas = np.zeros(shape, np.uint8)
        for _ in range(n):
            canvas[:] = 0
            u0, v0 = rng.uniform(-1.1, 1.1), rng.uniform(-0.9, 0.7)
            length = rng.uniform(0.3, 1.3)
            width = rng.uniform(0.05, 0.12)  # in d
            wob_a, wob_f, wob_p = rng.uniform(0.0, 0.06), rng.uniform(2, 6), rng.uniform(0, 6.28)
            ts = np.linspace(0.0, 1.0, 9)
            pts = frame.to_img(np.stack([u0 + wob_a * np.sin(wob_f * ts + wob_p), v0 + length * ts], axis=1))
            radii = frame.d * width / 2 * (1.0 - 0.35 * ts)
            polys = [capsule(pts[i], pts[i + 1], radii[i], radii[i + 1], points=6) for i in range(len(ts) - 1)]
            drop_r = frame.d * width * rng.uniform(0.6, 0.9)
            polys.append(superellipse(pts[-1] + [0, drop_r * 0.4], drop_r, drop_r * 1.1, drop_r * 1.2, 2.0, points=24))
            polys.append(superellipse(pts[0], radii[0] * 1.3, radii[0] * 1.1, radii[0] * 1.3, 2.0, points=20))
            fill_polygons(canvas, polys)
            alpha = np.maximum(alpha, canvas.astype(np.float32) / 255.0 * rng.uniform(lo, hi))
        for _ in range(int(rng.integers(0, 5))):  # stray droplets
            canvas[:] = 0
            c = frame.to_img(np.array([rng.uniform(-1.2, 1.2), rng.uniform(-0.8, 1.6)]))
            r = frame.d * rng.uniform(0.025, 0.06)
            fill_polygons(canvas, [superellipse(c, r, r, r, 2.0, points=16)])
            alpha = np.maximum(alpha, canvas.astype(np.float32) / 255.0 * rng.uniform(lo, hi))

        inside = alpha > 0
        dist = edge_distance(inside)
        rim = np.clip(dist / max(1.0, 0.04 * frame.d), 0.0, 1.0)[..., None]
        light = np.array([-1.0, -1.0]) / np.sqrt(2)  # highlight on the upper-left flank of each drip
        gy, gx = np.gradient(dist)
        spec = np.clip((gx * light[0] + gy * light[1]), 0.0, 1.0)[..., None] * (1 - rim * 0.5)
        if kind == "water":
            shift = max(1.0, frame.d * 0.06)
            mx = np.arange(shape[1], dtype=np.float32)[None, :] + np.float32(shift) * (gx.astype(np.float32))
            my = np.arange(shape[0], dtype=np.float32)[:, None] + np.float32(shift) * (gy.astype(np.float32))
            mx = np.broadcast_to(mx, shape).astype(np.float32)
            my = np.broadcast_to(my, shape).astype(np.float32)
            refr = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
            base = refr * 0.85 + 40.0
        else:
            base = np.broadcast_to(np.array(LIQUIDS[kind], np.float32) * rng.uniform(0.9, 1.1), shape + (3,))
        layer = base * (0.75 + 0.25 * rim) + 160.0 * spec
        return np.clip(layer, 0, 255), alpha, kind


VISOR_STYLES = ("face_shield", "eye_band", "upper")


class Visor(_Transparent):
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
        glare = _diagonal_glare(shape, frame, rng) * rng.uniform(0.0, 0.2)
        a = np.clip(level + slope * (0.5 - grad) + glare, lo, hi)
        tint = self.TINTS[int(rng.integers(len(self.TINTS)))] * rng.uniform(0.85, 1.15)
        layer = tint * (1.0 - glare[..., None] * 3) + 255.0 * glare[..., None] * 3
        return np.clip(layer, 0, 255), (cov * a).astype(np.float32), style
