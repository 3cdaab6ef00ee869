"""Transparent occluder: steam or fog, a cloudy veil mixing a heavy blur of the face with a fog colour."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from occtool.augment.base import FaceFrame, smooth_noise
from occtool.augment.occluders.common import TransparentOccluder
from occtool.augment.occluders.registry import register_occluder


STEAM_REGIONS = ("face", "lower", "glasses")


@register_occluder(default_weight=0.08)
class Steam(TransparentOccluder):
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


__all__ = ["STEAM_REGIONS", "Steam"]
