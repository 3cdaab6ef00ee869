"""occtool checkpoints: roundtrip (model + matcher + config), weights_only, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from occtool.errors import CheckpointError
from occtool.models import FaceModel, build_backbone, load_model_checkpoint, save_model_checkpoint
from occtool.models.iresnet import IResNet


def _perturbed_model(backbone, neck=24, hidden=16, seed=0):
    model = FaceModel(backbone=backbone, hidden_channels=hidden, neck_channels=neck)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.rand(t.shape, generator=g) * 0.01)
    return model.eval()


def _matcher_or_none(seed=0):
    """A QAConvMatcher with non-default values, once occtool.matching exists."""
    try:
        from occtool.matching import QAConvMatcher
    except ImportError:
        return None
    m = QAConvMatcher(num_features=24, height=7, width=7)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in m.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.rand(t.shape, generator=g))
    if hasattr(m, "mark_trained"):
        m.mark_trained()
    return m.eval()


@dataclasses.dataclass
class _Cfg:
    lr: float = 0.1
    out: Path = Path("runs/x")
    sizes: tuple = (1, 2)


def test_roundtrip_with_matcher(tmp_path):
    model = _perturbed_model(build_backbone("mobilefacenet"))
    matcher = _matcher_or_none()
    config = {"train": {"epochs": 3, "lr": 1e-3}, "cfg": _Cfg(), "name": "x"}
    path = save_model_checkpoint(tmp_path / "sub" / "model.pt", model=model, matcher=matcher, config=config,
                                 extra={"epoch": 7, "optimizer": {"state": {}}})
    assert path == tmp_path / "sub" / "model.pt" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left behind

    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain data only
    assert raw["format"] == "occtool" and raw["format_version"] == 1
    assert set(raw["versions"]) == {"occtool", "torch"}
    assert raw["model"]["backbone"] == "mobilefacenet" and raw["model"]["hidden_channels"] == 16
    assert raw["model"]["neck_channels"] == 24

    loaded = load_model_checkpoint(path)
    assert loaded.config == {"train": {"epochs": 3, "lr": 1e-3}, "cfg": {"lr": 0.1, "out": "runs/x", "sizes": (1, 2)}, "name": "x"}
    assert loaded.extra == {"epoch": 7, "optimizer": {"state": {}}}
    assert not loaded.model.training
    sd0, sd1 = model.state_dict(), loaded.model.state_dict()
    assert sd0.keys() == sd1.keys() and all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        a, b = model(x), loaded.model(x)
    for f in a._fields:
        torch.testing.assert_close(getattr(a, f), getattr(b, f), rtol=0, atol=0)
    if matcher is None:
        assert loaded.matcher is None
    else:
        assert type(loaded.matcher) is type(matcher)
        assert (loaded.matcher.num_features, loaded.matcher.height, loaded.matcher.width) == (24, 7, 7)
        ms0, ms1 = matcher.state_dict(), loaded.matcher.state_dict()
        assert ms0.keys() == ms1.keys() and all(torch.equal(ms0[k], ms1[k]) for k in ms0)
        with torch.no_grad():
            torch.testing.assert_close(matcher(a.match_map, b.match_map), loaded.matcher(a.match_map, b.match_map))


def test_matcher_landed():
    """Reminder guard: the roundtrip above covers the matcher once occtool.matching exists."""
    pytest.importorskip("occtool.matching")
    assert _matcher_or_none() is not None


def test_roundtrip_adaface_variant_keeps_bgr(tmp_path):
    model = FaceModel(backbone=IResNet(18, "adaface"), neck_channels=None)
    save_model_checkpoint(tmp_path / "m.pt", model=model, matcher=None, config={})
    loaded = load_model_checkpoint(tmp_path / "m.pt")
    assert loaded.model.backbone.variant == "adaface" and loaded.model.input_spec.channel_order == "BGR"
    assert loaded.model.neck is None and loaded.matcher is None
    # its backbone part also serves as plain backbone weights
    backbone = build_backbone("ir18", weights=tmp_path / "m.pt")
    assert backbone.variant == "adaface"
    assert torch.equal(backbone.net.fc.weight, model.backbone.net.fc.weight)


def test_unstorable_config_is_refused(tmp_path):
    model = FaceModel(backbone=build_backbone("mobilefacenet"))
    with pytest.raises(CheckpointError, match=r"config.fn: a function cannot be stored"):
        save_model_checkpoint(tmp_path / "m.pt", model=model, matcher=None, config={"fn": lambda: 1})
    assert not (tmp_path / "m.pt").exists()


def test_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "random.pt")
    with pytest.raises(CheckpointError, match="not an occtool checkpoint"):
        load_model_checkpoint(tmp_path / "random.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a torch file"):
        load_model_checkpoint(tmp_path / "text.pt")

    model = FaceModel(backbone=build_backbone("mobilefacenet"), neck_channels=8)
    save_model_checkpoint(tmp_path / "m.pt", model=model, matcher=None, config={})
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    sd = ckpt["model"]["state_dict"]
    sd.pop("head.conv2.bias")
    sd["head.conv3.weight"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"model weights do not match.*1 missing keys \(head.conv2.bias\).*1 unexpected keys \(head.conv3.weight\)"):
        load_model_checkpoint(tmp_path / "bad.pt")

    ckpt["format_version"] = 99
    torch.save(ckpt, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_model_checkpoint(tmp_path / "future.pt")
