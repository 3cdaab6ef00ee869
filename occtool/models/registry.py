"""The backbone registry, timm-style: each architecture file registers its factories.

    @register_backbone("mynet", default_weights=("weights", "mynet", "mynet.pt"))
    def mynet(*, state=None, variant=None, source="weights") -> Backbone: ...

A factory builds the network, random-initialised when `state` is None, else loaded strictly
from that already-read, unwrapped state dict (`source` names it in errors); `variant` is the
architecture's own option (None = its default). `create_backbone` reads the weights and calls
the factory; `occtool.models` imports every architecture module, so adding a backbone is one file
plus its import line there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from occtool.errors import ConfigError
from occtool.models.base import Backbone
from occtool.models.weights import read_state_dict, unwrap_state_dict
from occtool.resources import shared_path

Factory = Callable[..., Backbone]


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    factory: Factory
    default_weights: tuple[str, ...] | None  # path parts inside ../shared, or None


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(name: str, *, default_weights: tuple[str, ...] | None = None) -> Callable[[Factory], Factory]:
    """Decorator registering `factory(*, state, variant, source) -> Backbone` as `name`."""

    def decorate(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is registered twice")
        _REGISTRY[name] = BackboneEntry(name, factory, tuple(default_weights) if default_weights else None)
        return factory

    return decorate


def list_backbones() -> list[str]:
    """Names accepted by `create_backbone`, in registration order."""
    return list(_REGISTRY)


def _entry(name: str) -> BackboneEntry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown backbone {name!r}: expected one of {', '.join(_REGISTRY)}") from None


def has_default_weights(name: str) -> bool:
    """Whether `name` ships default weights (in ../shared); no file system access."""
    return _entry(name).default_weights is not None


def default_weights(name: str) -> Path | None:
    """The weights shipped in ../shared for `name`, or None when there are none.

    mobilefacenet -> ../shared/weights/mobilefacenet/mobilefacenet.pt (DataError saying how to
    point at it when the shared folder is absent). IR nets: None (pass your AdaFace or
    arcface_torch checkpoint explicitly).
    """
    parts = _entry(name).default_weights
    return shared_path(*parts) if parts else None


def create_backbone(
    name: str,
    *,
    weights: str | Path | Mapping[str, torch.Tensor] | None = None,
    variant: str | None = None,
    **kwargs: Any,
) -> Backbone:
    """Build backbone `name` (see `list_backbones`), random-initialised or loaded from `weights`.

    weights: a state dict file (torch, loaded with weights_only=True, or .safetensors), possibly
    wrapped as {"state_dict": ...} or with `module.` / `model.` prefixes, an occtool checkpoint
    (its backbone part), or an in-memory state dict. Loading is strict: a CheckpointError names
    missing/unexpected keys. IR nets accept the arcface_torch and the AdaFace key layouts; the
    layout found decides the variant (and so the input channel order: AdaFace nets read BGR).
    variant: IR nets only, for random init: "arcface" (default) or "adaface".
    kwargs: passed to the factory (architecture-specific options).
    """
    entry = _entry(name)
    source = "in-memory state dict" if isinstance(weights, Mapping) else str(weights)
    state = None
    if isinstance(weights, Mapping):
        state = unwrap_state_dict(weights, source=source)
    elif weights is not None:
        state = read_state_dict(weights)
    return entry.factory(state=state, variant=variant, source=source, **kwargs)


build_backbone = create_backbone  # the historical name

__all__ = ["BackboneEntry", "build_backbone", "create_backbone", "default_weights", "has_default_weights", "list_backbones", "register_backbone"]
