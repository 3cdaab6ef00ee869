"""Transparent occluder: liquid drips (water refracts the face; coffee, milk, juice, tea tint it)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from occtool.augment.base import FaceFrame, capsule, edge_distance, fill_polygons, superellipse
from occtool.augment.occluders.common import TransparentOccluder
from occtool.augment.occluders.registry import register_occluder


LIQUIDS = {
    "water": None,  # refraction of the face, brightened
    "coffee": (95, 60, 35),
    "milk": (240, 238, 230),
    "juice": (235, 145, 35),
    "tea": (170, 110, 50),
}


@register_occluder(default_weight=0.08)
class Liquid(TransparentOccluder):
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


__all__ = ["LIQUIDS", "Liquid"]
