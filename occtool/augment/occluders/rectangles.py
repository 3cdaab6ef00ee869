"""Opaque occluder: 1-3 random rectangles filled with a solid colour or noise (anywhere in the image)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from occtool.augment.base import Occluder
from occtool.augment.occluders.registry import register_occluder


RECT_FILLS = ("solid", "noise")


@register_occluder(default_weight=0.1)
class Rectangles(Occluder):
    """1-3 axis-aligned rectangles anywhere in the image, each filled with a solid colour or noise.

    count: (min, max) number of rectangles; size: (min, max) side length as a fraction of the
    image side (width and height drawn independently); fills: among "solid", "noise".
    """

    name = "rectangles"
    occlusion_class = "opaque"

    def __init__(
        self,
        *,
        count: tuple[int, int] = (1, 3),
        size: tuple[float, float] = (0.15, 0.45),
        fills: Sequence[str] = RECT_FILLS,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        lo, hi = int(count[0]), int(count[1])
        if not 1 <= lo <= hi:
            raise ValueError(f"rectangles.count: expected 1 <= min <= max, got {tuple(count)}")
        slo, shi = float(size[0]), float(size[1])
        if not 0.0 < slo <= shi <= 1.0:
            raise ValueError(f"rectangles.size: expected 0 < min <= max <= 1, got {tuple(size)}")
        bad = [f for f in fills if f not in RECT_FILLS]
        if bad or not fills:
            raise ValueError(f"rectangles.fills: expected some of {', '.join(RECT_FILLS)}, got {list(fills)}")
        self.count, self.size, self.fills = (lo, hi), (slo, shi), tuple(fills)

    @classmethod
    def from_config(cls, config, *, p: float = 1.0) -> "Rectangles":
        if config is None:
            return cls(p=p)
        r = config.rectangles
        return cls(count=tuple(r.count), size=tuple(r.size), fills=r.fills, p=p)

    def _apply(self, image, frame, rng):
        hgt, wid = image.shape[:2]
        layer = np.zeros((hgt, wid, 3), np.float32)
        alpha = np.zeros((hgt, wid), np.float32)
        n = int(rng.integers(self.count[0], self.count[1] + 1))
        kinds = []
        for _ in range(n):
            rw = int(np.clip(round(rng.uniform(*self.size) * wid), 1, wid))
            rh = int(np.clip(round(rng.uniform(*self.size) * hgt), 1, hgt))
            x0 = int(rng.integers(0, wid - rw + 1))
            y0 = int(rng.integers(0, hgt - rh + 1))
            fill = self.fills[int(rng.integers(len(self.fills)))]
            if fill == "solid":
                layer[y0 : y0 + rh, x0 : x0 + rw] = rng.integers(0, 256, size=3)
            else:
                block = int(rng.choice([1, 2, 4]))
                noise = rng.integers(0, 256, size=(-(-rh // block), -(-rw // block), 3)).astype(np.float32)
                if rng.random() < 0.3:
                    noise[:] = noise[..., :1]
                noise = np.repeat(np.repeat(noise, block, axis=0), block, axis=1)[:rh, :rw]
                layer[y0 : y0 + rh, x0 : x0 + rw] = noise
            alpha[y0 : y0 + rh, x0 : x0 + rw] = 1.0
            kinds.append(fill)
        return layer, alpha, f"{n}x" + "+".join(kinds)


__all__ = ["RECT_FILLS", "Rectangles"]
