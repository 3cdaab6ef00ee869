"""Image-level degradations after occlusion (issue 12): what a camera and the web do to a photo,
applied to the whole face, occluder and all, so that a model trained on synthetic occluders cannot
key on pristine pasted pixels.

With probability `p` (0 by default: off, and then no random number is drawn, so a seed gives
the same faces as without this step) each of these is applied with probability `each`:
low resolution (shrink by a factor in `downscale`, then back), Gaussian blur (`blur` sigma, in
pixels of a 112-pixel face), colour jitter (brightness, contrast, saturation factors), sensor
noise (`noise` std in grey levels) and JPEG at a quality in `jpeg_quality`. Geometry is never
changed, so the visibility map stays the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from occtool.config import check_interval, check_range


@dataclass
class DegradeConfig:
    p: float = 0.0  # probability that a face is degraded at all (0: off)
    each: float = 0.5  # probability of each degradation once a face is degraded
    downscale: tuple[float, float] = (0.25, 0.8)  # shrink factor before scaling back up
    blur: tuple[float, float] = (0.4, 1.6)  # Gaussian sigma, pixels of a 112-pixel face
    brightness: tuple[float, float] = (0.7, 1.25)
    contrast: tuple[float, float] = (0.7, 1.25)
    saturation: tuple[float, float] = (0.5, 1.3)
    noise: tuple[float, float] = (1.0, 8.0)  # Gaussian noise std, grey levels
    jpeg_quality: tuple[int, int] = (25, 90)

    def __post_init__(self) -> None:
        check_range("p", self.p, lo=0.0, hi=1.0)
        check_range("each", self.each, lo=0.0, hi=1.0)
        check_interval("downscale", self.downscale, lo=0.05, hi=1.0)
        check_interval("blur", self.blur, lo=0.0, hi=10.0)
        for key in ("brightness", "contrast", "saturation"):
            check_interval(key, getattr(self, key), lo=0.0, hi=3.0)
        check_interval("noise", self.noise, lo=0.0, hi=64.0)
        check_interval("jpeg_quality", self.jpeg_quality, lo=1, hi=100)


class Degradation:
    """`degrade(image uint8 RGB [H, W, 3], rng) -> uint8 RGB [H, W, 3]` (same shape; a new array
    when degraded, the input itself when not). Seeded through the rng only."""

    def __init__(self, config: DegradeConfig | None = None):
        self.config = config or DegradeConfig()

    @property
    def enabled(self) -> bool:
        return self.config.p > 0.0

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.config
        if c.p <= 0.0 or rng.random() >= c.p:
            return image
        hgt, wid = image.shape[:2]
        scale = max(hgt, wid) / 112.0
        out = image.astype(np.float32)
        if rng.random() < c.each:
            f = rng.uniform(*c.downscale)
            small = cv2.resize(out, (max(2, round(wid * f)), max(2, round(hgt * f))), interpolation=cv2.INTER_AREA)
            out = cv2.resize(small, (wid, hgt), interpolation=cv2.INTER_LINEAR)
        if rng.random() < c.each:
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(*c.blur) * scale)
        if rng.random() < c.each:
            out = _colour_jitter(out, rng, c)
        if rng.random() < c.each:
            out = out + rng.normal(0.0, rng.uniform(*c.noise), size=out.shape).astype(np.float32)
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        if rng.random() < c.each:
            q = int(rng.integers(c.jpeg_quality[0], c.jpeg_quality[1] + 1))
            ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok:
                out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
        return out


def _colour_jitter(img: np.ndarray, rng: np.random.Generator, c: DegradeConfig) -> np.ndarray:
    """Brightness, contrast (about the mean grey) and saturation (about the pixel's grey), float."""
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img = grey[..., None] + (img - grey[..., None]) * np.float32(rng.uniform(*c.saturation))
    mean = float(grey.mean())
    img = mean + (img - mean) * np.float32(rng.uniform(*c.contrast))
    return img * np.float32(rng.uniform(*c.brightness))


__all__ = ["DegradeConfig", "Degradation"]
