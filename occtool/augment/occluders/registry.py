"""The occluder registry: each family file registers its class with a default weight.

    @register_occluder(default_weight=0.1)
    class Umbrella(Occluder):  # or TransparentOccluder
        name = "umbrella"
        occlusion_class = "opaque"
        def _apply(self, image, frame, rng): ...

`list_occluders()` keeps registration order (the import order in `occtool.augment.occluders`):
the synthesizer draws among the occluders in that order, so it is part of what a seed means.
`OccluderWeights` (occtool.augment.config) is derived from it: one weight field per family.
"""

from __future__ import annotations

from dataclasses import dataclass

from occtool.augment.base import Occluder
from occtool.errors import ConfigError

OCCLUDER_KINDS = ("opaque", "transparent")


@dataclass(frozen=True)
class OccluderEntry:
    name: str
    cls: type[Occluder]
    default_weight: float  # relative weight in the default OccluderWeights


_REGISTRY: dict[str, OccluderEntry] = {}


def register_occluder(*, default_weight: float):
    """Class decorator: register an Occluder subclass under its `name`."""

    def decorate(cls: type[Occluder]) -> type[Occluder]:
        name = cls.name
        if not (isinstance(name, str) and name.isidentifier()) or name in ("base", "none"):
            raise ValueError(f"{cls.__name__}: occluder name must be an identifier (a config key), got {name!r}")
        if name in _REGISTRY:
            raise ValueError(f"occluder {name!r} is registered twice")
        if cls.occlusion_class not in OCCLUDER_KINDS:
            raise ValueError(f"{name}: occlusion_class must be one of {OCCLUDER_KINDS}, got {cls.occlusion_class!r}")
        if not float(default_weight) >= 0.0:
            raise ValueError(f"{name}: default_weight must be >= 0, got {default_weight}")
        _REGISTRY[name] = OccluderEntry(name, cls, float(default_weight))
        return cls

    return decorate


def list_occluders(kind: str | None = None) -> list[str]:
    """Registered occluder names in registration order; `kind` "opaque" / "transparent" filters."""
    return [n for n, e in _REGISTRY.items() if kind is None or e.cls.occlusion_class == kind]


def _entry(name: str) -> OccluderEntry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown occluder {name!r}; valid: {', '.join(_REGISTRY)}") from None


def occluder_class(name: str) -> str:
    """The occlusion class of occluder `name`: "opaque" or "transparent"."""
    return _entry(name).cls.occlusion_class


def occluder_type(name: str) -> type[Occluder]:
    """The Occluder subclass registered as `name`."""
    return _entry(name).cls


def default_occluder_weights() -> dict[str, float]:
    """{name: default weight} in registration order (the defaults of OccluderWeights)."""
    return {n: e.default_weight for n, e in _REGISTRY.items()}


def create_occluder(name: str, config=None, *, p: float = 1.0) -> Occluder:
    """The occluder `name` with its settings from `config` (a SynthesisConfig; None: defaults),
    applied with probability `p`. Bad settings are ConfigErrors naming the occluder."""
    cls = _entry(name).cls
    try:
        return cls.from_config(config, p=p)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


__all__ = [
    "OCCLUDER_KINDS",
    "OccluderEntry",
    "create_occluder",
    "default_occluder_weights",
    "list_occluders",
    "occluder_class",
    "occluder_type",
    "register_occluder",
]
