"""The occluder registry: names, classes, the derived OccluderWeights and the exported tuples."""

from __future__ import annotations

import dataclasses

import pytest

from occtool.augment import (
    OCCLUDER_NAMES,
    OPAQUE_OCCLUDERS,
    TRANSPARENT_OCCLUDERS,
    Occluder,
    OccluderWeights,
    build_occluder,
    create_occluder,
    list_occluders,
    occluder_class,
    register_occluder,
)
from occtool.augment.occluders import default_occluder_weights, occluder_type
from occtool.augment.config import SynthesisConfig
from occtool.config import load_config
from occtool.errors import ConfigError

FAMILIES = ["medical_mask", "rectangles", "sunglasses", "hand", "scarf", "eyeglasses", "steam", "liquid", "visor"]


def test_names_order_and_kinds():
    # registration order is part of what a seed means (the synthesizer draws in this order)
    assert list_occluders() == FAMILIES
    assert OCCLUDER_NAMES == tuple(FAMILIES)
    assert OPAQUE_OCCLUDERS == ("medical_mask", "rectangles", "sunglasses", "hand", "scarf")
    assert TRANSPARENT_OCCLUDERS == ("eyeglasses", "steam", "liquid", "visor")
    assert list_occluders("opaque") + list_occluders("transparent") == sorted(FAMILIES, key=FAMILIES.index)
    for name in FAMILIES:
        cls = occluder_type(name)
        assert issubclass(cls, Occluder) and cls.name == name
        assert occluder_class(name) == cls.occlusion_class == ("opaque" if name in OPAQUE_OCCLUDERS else "transparent")


def test_occluder_weights_follow_the_registry():
    assert [f.name for f in dataclasses.fields(OccluderWeights)] == list_occluders()
    assert OccluderWeights().as_dict() == default_occluder_weights()
    assert default_occluder_weights()["medical_mask"] == 0.3 and default_occluder_weights()["visor"] == 0.08
    cfg = load_config(SynthesisConfig, overrides=["weights.hand=2.5", "weights.medical_mask=0"])
    assert cfg.weights.hand == 2.5 and cfg.weights.medical_mask == 0.0
    with pytest.raises(ConfigError, match="weights.umbrella"):
        load_config(SynthesisConfig, overrides=["weights.umbrella=1"])


def test_create_occluder_reads_config_and_reports_errors():
    cfg = load_config(SynthesisConfig, overrides=["rectangles.count=[2,2]", "transparent.opacity=[0.4,0.5]"])
    assert create_occluder("rectangles", cfg).count == (2, 2)
    assert create_occluder("visor", cfg).opacity == (0.4, 0.5)
    assert build_occluder("steam").opacity == (0.3, 0.7)
    with pytest.raises(ConfigError, match="unknown occluder 'umbrella'.*medical_mask"):
        create_occluder("umbrella")
    with pytest.raises(ConfigError, match=r"^transparent.opacity: expected \[min, max\]"):
        load_config(SynthesisConfig, overrides=["transparent.opacity=[0.0,1.0]"])
    bad = SynthesisConfig()
    bad.transparent.opacity = (0.0, 1.0)  # mutated after its checks: the occluder still refuses it
    with pytest.raises(ConfigError, match="steam: opacity"):
        create_occluder("steam", bad)


def test_registration_is_checked():
    class Twice(Occluder):
        name = "steam"

    class BadKind(Occluder):
        name = "umbrella"
        occlusion_class = "cloudy"

    with pytest.raises(ValueError, match="registered twice"):
        register_occluder(default_weight=0.1)(Twice)
    with pytest.raises(ValueError, match="occlusion_class"):
        register_occluder(default_weight=0.1)(BadKind)
    assert "umbrella" not in list_occluders()
