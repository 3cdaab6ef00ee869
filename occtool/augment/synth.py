"""`OcclusionSynthesizer`: picks one occluder per image with configured probabilities."""

from __future__ import annotations

import numpy as np

from dataclasses import replace

from occtool.augment.base import Occluder, OcclusionResult, check_image, clean_result
from occtool.augment.config import OCCLUDER_NAMES, SynthesisConfig
from occtool.augment.degrade import Degradation
from occtool.augment.occluders import create_occluder
from occtool.errors import ConfigError


def build_occluder(name: str, config: SynthesisConfig | None = None, *, p: float = 1.0) -> Occluder:
    """The occluder `name` (one of OCCLUDER_NAMES) with its settings from `config` (defaults when
    None): `occtool.augment.occluders.create_occluder`."""
    return create_occluder(name, config or SynthesisConfig(), p=p)


class OcclusionSynthesizer:
    """Occlude a face with one randomly chosen occluder.

    With probability `keep_clean` the image is returned unchanged (occluder "none", visibility
    all 1); otherwise one occluder is drawn with probability weight_i / sum(weights) among
    those with a positive weight. Then, when `config.degrade.p` > 0, image-level degradations
    (occtool.augment.degrade) apply to the result, clean ones included (visibility unchanged;
    with p 0 no random number is drawn for them). Deterministic given the rng:
    `synth(image, landmarks=None, rng=np.random.default_rng(seed))`.
    """

    def __init__(self, *, config: SynthesisConfig | None = None):
        self.config = config or SynthesisConfig()
        weights = self.config.weights.as_dict()  # >= 0 and keep_clean in [0, 1]: checked by the config
        self.names = [n for n in OCCLUDER_NAMES if weights[n] > 0]
        if not self.names and self.config.keep_clean < 1.0:
            raise ConfigError("no occluder enabled (all weights are 0); set keep_clean=1 for clean copies only")
        total = sum(weights[n] for n in self.names)
        self.probabilities = np.array([weights[n] / total for n in self.names]) if self.names else np.zeros(0)
        self.occluders: dict[str, Occluder] = {n: build_occluder(n, self.config) for n in self.names}
        self.degradation = Degradation(self.config.degrade)

    def __call__(self, image: np.ndarray, *, landmarks=None, rng: np.random.Generator) -> OcclusionResult:
        check_image(image)
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        if not self.names or rng.random() < self.config.keep_clean:
            return self._degrade(clean_result(image), rng)
        idx = int(rng.choice(len(self.names), p=self.probabilities))
        return self._degrade(self.occluders[self.names[idx]](image, landmarks=landmarks, rng=rng), rng)

    def degrade(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The configured image-level degradations alone (the input itself when off)."""
        return self.degradation(image, rng)

    def _degrade(self, result: OcclusionResult, rng: np.random.Generator) -> OcclusionResult:
        if not self.degradation.enabled:
            return result
        return replace(result, image=self.degradation(result.image, rng))

    def __repr__(self) -> str:
        probs = ", ".join(f"{n}={p:.3f}" for n, p in zip(self.names, self.probabilities))
        return f"OcclusionSynthesizer(keep_clean={self.config.keep_clean}, {probs})"
