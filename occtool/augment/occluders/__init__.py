"""The occluder families, one file each, registered by name (see `registry`).

Importing this package registers them in the order below, which is `list_occluders()` order
(and so part of what a seed means to the synthesizer). Adding an occluder: one file here with
a `@register_occluder(default_weight=...)` class, plus its import line below; its weight key
(`weights.<name>`), `create_occluder`, the CLI's `--occluders` and the contract tests follow.
"""

# isort: off
from occtool.augment.occluders.medical_mask import MASK_TYPES, MedicalMask
from occtool.augment.occluders.rectangles import Rectangles
from occtool.augment.occluders.sunglasses import Sunglasses
from occtool.augment.occluders.hand import Hand
from occtool.augment.occluders.scarf import Scarf
from occtool.augment.occluders.eyeglasses import Eyeglasses
from occtool.augment.occluders.steam import Steam
from occtool.augment.occluders.liquid import Liquid
from occtool.augment.occluders.visor import Visor
from occtool.augment.occluders.real_mask import REAL_MASK_TYPES, RealMask  # weight 0 by default: appended last

# isort: on
from occtool.augment.occluders.common import TransparentOccluder
from occtool.augment.occluders.registry import (
    OCCLUDER_KINDS,
    create_occluder,
    default_occluder_weights,
    list_occluders,
    occluder_class,
    occluder_type,
    register_occluder,
)

__all__ = [
    "MASK_TYPES",
    "OCCLUDER_KINDS",
    "Eyeglasses",
    "Hand",
    "Liquid",
    "MedicalMask",
    "REAL_MASK_TYPES",
    "RealMask",
    "Rectangles",
    "Scarf",
    "Steam",
    "Sunglasses",
    "TransparentOccluder",
    "Visor",
    "create_occluder",
    "default_occluder_weights",
    "list_occluders",
    "occluder_class",
    "occluder_type",
    "register_occluder",
]
