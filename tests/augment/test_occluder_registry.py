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
    # registration order is part of what a seed means (the synthesizer draws in this order):
    # the nine original families come first, in this order; new ones are appended
    assert list_occluders()[: len(FAMILIES)] == FAMILIES
    assert OCCLUDER_NAMES == tuple(list_occluders())
    assert OPAQUE_OCCLUDERS[:5] == ("medical_mask", "rectangles", "sunglasses", "hand", "scarf")
    assert TRANSPARENT_OCCLUDERS[:4] == ("eyeglasses", "steam", "liquid", "visor")
    assert sorted(OPAQUE_OCCLUDERS + TRANSPARENT_OCCLUDERS) == sorted(list_occluders())
    for name in list_occluders():
        cls = occluder_type(name)
        assert issubclass(cls, Occluder) and cls.name == name
        assert occluder_class(name) == cls.occlusion_class == ("opaque" if name in OPAQUE_OCCLUDERS else "transparent")


def test_occluder_weights_follow_the_registry():
    assert [f.name for f in dataclasses.fields(OccluderWeights)] == list_occluders()
    assert OccluderWeights().as_dict() == default_occluder_weights()
    defaults = dict(zip(FAMILIES, (0.3, 0.1, 0.1, 0.1, 0.08, 0.08, 0.08, 0.08, 0.08)))
    assert {n: default_occluder_weights()[n] for n in FAMILIES} == defaults
    cfg = load_config(SynthesisConfig, overrides=["weights.hand=2.5", "weights.medical_mask=0"])
    assert cfg.weights.hand == 2.5 and cfg.weights.medical_mask == 0.0
    with pytest.raises(ConfigError, match="weights.no_such_occluder"):
        load_config(SynthesisConfig, overrides=["weights.no_such_occluder=1"])


def test_create_occluder_reads_config_and_reports_errors():
    cfg = load_config(SynthesisConfig, overrides=["rectangles.count=[2,2]", "transparent.opacity=[0.4,0.5]"])
    assert create_occluder("rectangles", cfg).count == (2, 2)
    assert create_occluder("visor", cfg).opacity == (0.4, 0.5)
    assert build_occluder("steam").opacity == (0.3, 0.7)
    with pytest.raises(ConfigError, match="unknown occluder 'no_such_occluder'.*medical_mask"):
        create_occluder("no_such_occluder")
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
        name = "no_such_occluder"
        occlusion_class = "cloudy"

    with pytest.raises(ValueError, match="registered twice"):
        register_occluder(default_weight=0.1)(Twice)
    with pytest.raises(ValueError, match="occlusion_class"):
        register_occluder(default_weight=0.1)(BadKind)
    assert "no_such_occluder" not in list_occluders()
