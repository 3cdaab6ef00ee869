"""Degradations of face images, registered: `list_degradations()`, `create_degradation(name, config)`.

A degradation is called as `d(image uint8 RGB [H, W, 3], rng=np.random.Generator) -> uint8
[H, W, 3]` (same size), deterministic given the rng. Registered: occlusion (augment's
occluders, `occtool.augment.OcclusionSynthesizer`), low_res (bicubic down to a side drawn in
`size_px`, then bicubic back up), blur (Gaussian), jpeg (re-encoding), noise (Gaussian).
`Degrader` picks one per degraded view by `degrade.weights`. A new degradation is one class with
`@register_degradation("name")` here plus its weight/section in `DegradeConfig`.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from occtool.augment import OcclusionSynthesizer
from occtool.errors import ConfigError, ShapeError

_REGISTRY: dict[str, Callable] = {}


def register_degradation(name: str):
    def decorate(cls):
        if name in _REGISTRY:
            raise ValueError(f"degradation {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_degradations() -> list[str]:
    return list(_REGISTRY)


def create_degradation(name: str, config):
    """The degradation `name` with its settings from `config` (a `DegradeConfig`)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown degradation {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name](config)


def _check(image: np.ndarray) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ShapeError(f"degradation input: expected uint8 [H, W, 3], got {getattr(image, 'dtype', type(image))} "
                         f"{getattr(image, 'shape', '')}")


def _uniform(rng: np.random.Generator, pair) -> float:
    return float(rng.uniform(pair[0], pair[1])) if pair[0] < pair[1] else float(pair[0])


def low_resolution(image: np.ndarray, size_px: int) -> np.ndarray:
    """Bicubic down to size_px x size_px, then bicubic back up (what the low-res probes use)."""
    _check(image)
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((size_px, size_px), Image.BICUBIC)
    return np.asarray(small.resize((w, h), Image.BICUBIC), dtype=np.uint8)


@register_degradation("occlusion")
class Occlusion:
    def __init__(self, config) -> None:
        self.synth = OcclusionSynthesizer(config=config.occlusion)

    def __call__(self, image: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
        _check(image)
        return self.synth(image, rng=rng).image


@register_degradation("low_res")
class LowResolution:
    def __init__(self, config) -> None:
        self.size_px = tuple(config.low_res.size_px)

    def __call__(self, image: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
        side = int(rng.integers(self.size_px[0], self.size_px[1] + 1))
        return low_resolution(image, side)


@register_degradation("blur")
class Blur:
    def __init__(self, config) -> None:
        self.sigma_px = tuple(config.blur.sigma_px)

    def __call__(self, image: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
        _check(image)
        sigma = _uniform(rng, self.sigma_px)
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)), dtype=np.uint8)


@register_degradation("jpeg")
class Jpeg:
    def __init__(self, config) -> None:
        self.quality = tuple(config.jpeg.quality)

    def __call__(self, image: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
        _check(image)
        q = int(rng.integers(self.quality[0], self.quality[1] + 1))
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=q)
        buf.seek(0)
        return np.asarray(Image.open(buf).convert("RGB"), dtype=np.uint8)


@register_degradation("noise")
class Noise:
    def __init__(self, config) -> None:
        self.std = tuple(config.noise.std)

    def __call__(self, image: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
        _check(image)
        noisy = image.astype(np.float32) + rng.normal(0.0, _uniform(rng, self.std), image.shape).astype(np.float32)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


class Degrader:
    """Applies one degradation per call, drawn by the configured weights (`DegradeConfig`)."""

    def __init__(self, config) -> None:
        weights = config.weights.as_dict()
        self.names = [n for n in list_degradations() if weights.get(n, 0.0) > 0]
        total = sum(weights[n] for n in self.names)
        self.probabilities = np.array([weights[n] / total for n in self.names]) if self.names else np.zeros(0)
        self.degradations = {n: create_degradation(n, config) for n in self.names}
        self.config = config

    def kind(self, name: str):
        """One named degradation (built on demand: validation probes of a kind trained with weight 0)."""
        if name not in self.degradations:
            self.degradations[name] = create_degradation(name, self.config)
        return self.degradations[name]

    def __call__(self, image: np.ndarray, *, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """(degraded image, the degradation's name)."""
        if not self.names:
            raise ConfigError("degrade.weights: no degradation enabled")
        name = self.names[int(rng.choice(len(self.names), p=self.probabilities))]
        return self.degradations[name](image, rng=rng), name
