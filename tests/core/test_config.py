from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from occtool.config import load_config, parse_override, to_dict, to_yaml
from occtool.errors import ConfigError


@dataclass
class Optim:
    lr: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Cfg:
    name: str = "run"
    epochs: int = 3
    device: Literal["auto", "cpu", "cuda"] = "auto"
    weights: Optional[Path] = None
    tags: list[str] = field(default_factory=list)
    optim: Optim = field(default_factory=Optim)


def test_defaults_yaml_then_overrides(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("epochs: 5\noptim:\n  lr: 1e-3\n")
    cfg = load_config(Cfg, yaml_path=cfg_file, overrides=["optim.lr=0.5", "tags=[a, b]"])
    assert cfg.epochs == 5 and cfg.optim.lr == 0.5 and cfg.tags == ["a", "b"]
    assert cfg.optim.betas == (0.9, 0.999) and cfg.name == "run"


def test_yaml_scientific_string_becomes_float(tmp_path):
    (tmp_path / "c.yaml").write_text("optim:\n  lr: 1e-3\n")  # PyYAML reads this as a string
    assert load_config(Cfg, yaml_path=tmp_path / "c.yaml").optim.lr == pytest.approx(1e-3)


def test_null_override_sets_an_optional_key_to_none(tmp_path):
    (tmp_path / "c.yaml").write_text("weights: w.pt\n")
    assert load_config(Cfg, yaml_path=tmp_path / "c.yaml").weights == Path("w.pt")
    for overrides in (["weights=null"], {"weights": None}):  # --set list and the CLI's merged mapping
        assert load_config(Cfg, yaml_path=tmp_path / "c.yaml", overrides=overrides).weights is None
    with pytest.raises(ConfigError, match="epochs"):  # null for a required number: a clear error
        load_config(Cfg, overrides=["epochs=null"])


def test_build_config_unset_cli_options_do_not_override(tmp_path):
    from occtool.cli.common import build_config

    (tmp_path / "c.yaml").write_text("epochs: 5\nweights: w.pt\n")
    cfg = build_config(Cfg, tmp_path / "c.yaml", ["weights=null"], {"epochs": None, "name": "x"})
    assert cfg.epochs == 5 and cfg.name == "x" and cfg.weights is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("epoch=3", "unknown config key(s) epoch"),
        ("optim.momentum=0.9", "unknown config key(s) optim.momentum"),
        ("epochs=three", "epochs: expected an integer"),
        ("device=tpu", "device: expected one of auto, cpu, cuda"),
        ("optim.betas=[1]", "expected 2 values"),
        ("noequals", "expected key=value"),
    ],
)
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(Cfg, overrides=[override])


def test_missing_and_malformed_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, yaml_path=tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(Cfg, yaml_path=tmp_path / "bad.yaml")


def test_yaml_roundtrip(tmp_path):
    cfg = load_config(Cfg, overrides=["weights=/x/w.pt", "optim.lr=0.25"])
    (tmp_path / "out.yaml").write_text(to_yaml(cfg))
    again = load_config(Cfg, yaml_path=tmp_path / "out.yaml")
    assert again == cfg
    assert to_dict(cfg)["weights"] == "/x/w.pt"


def test_parse_override_types():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
