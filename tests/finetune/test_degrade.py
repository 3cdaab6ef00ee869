"""Degradations (registry, shapes, seeds), the degraded share of each identity's views, and the
restoration hook with a tiny TorchScript module made here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from occtool.errors import ConfigError, DataError, ShapeError
from occtool.finetune.config import DegradeConfig, DegradationWeights
from occtool.finetune.degrade import Degrader, create_degradation, list_degradations, low_resolution
from occtool.finetune.restore import load_restorer
from occtool.finetune.views import degraded_count

IMG = (np.random.default_rng(0).random((112, 112, 3)) * 255).astype(np.uint8)


def test_registry_lists_every_kind_and_rejects_unknown():
    assert list_degradations() == ["occlusion", "low_res", "blur", "jpeg", "noise"]
    with pytest.raises(ConfigError, match="unknown degradation 'fog'"):
        create_degradation("fog", DegradeConfig())


@pytest.mark.parametrize("name", ["low_res", "blur", "jpeg", "noise"])
def test_shape_dtype_seed_determinism(name):
    d = create_degradation(name, DegradeConfig())
    a = d(IMG, rng=np.random.default_rng(1))
    b = d(IMG, rng=np.random.default_rng(1))
    assert a.shape == IMG.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, IMG)
    with pytest.raises(ShapeError):
        d(IMG[..., 0], rng=np.random.default_rng(1))


def test_noise_and_low_res_differ_between_seeds():
    for name in ("noise", "low_res"):
        d = create_degradation(name, DegradeConfig())
        outs = {d(IMG, rng=np.random.default_rng(s)).tobytes() for s in range(6)}
        assert len(outs) > 1


def test_low_resolution_keeps_only_what_size_px_pixels_hold():
    small = low_resolution(IMG, 16)
    # going down to 16 px again changes (almost) nothing: the detail above 16 px is gone
    again = low_resolution(small, 16)
    assert np.abs(again.astype(int) - small.astype(int)).mean() < 0.35 * np.abs(small.astype(int) - IMG.astype(int)).mean()
    # a flat image stays flat
    flat = np.full((112, 112, 3), 77, np.uint8)
    assert np.abs(low_resolution(flat, 14).astype(int) - 77).max() <= 1


def test_occlusion_uses_augments_occluders(masktheface_dir):
    cfg = DegradeConfig()
    d = create_degradation("occlusion", cfg)
    out = d(IMG, rng=np.random.default_rng(0))
    assert out.shape == IMG.shape and not np.array_equal(out, IMG)


def test_degrader_draws_by_weight():
    cfg = DegradeConfig(weights=DegradationWeights(occlusion=0.0, low_res=1.0, blur=0.0, jpeg=3.0, noise=0.0))
    deg = Degrader(cfg)
    names = [deg(IMG, rng=np.random.default_rng(s))[1] for s in range(200)]
    assert set(names) == {"low_res", "jpeg"}
    assert 0.6 < names.count("jpeg") / 200 < 0.9
    assert deg.kind("blur")(IMG, rng=np.random.default_rng(0)).shape == IMG.shape  # built on demand
    with pytest.raises(ConfigError, match="degrade.weights|weights"):
        DegradeConfig(weights=DegradationWeights(occlusion=0, low_res=0))


@pytest.mark.parametrize("k,fraction,expected", [(4, 0.5, 2), (4, 0.0, 0), (4, 1.0, 3), (2, 0.1, 1), (5, 0.5, 2)])
def test_degraded_count_keeps_a_clean_and_a_degraded_view(k, fraction, expected):
    assert degraded_count(k, fraction) == expected


class _Halve(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5


class _Upscale(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")


def test_restoration_hook_torchscript(tmp_path):
    path = tmp_path / "halve.pt"
    torch.jit.save(torch.jit.script(_Halve()), str(path))
    restore = load_restorer(path, batch_size=2)
    batch = np.stack([IMG, IMG[::-1], IMG[:, ::-1]])
    out = restore(batch)
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - np.round(batch / 2.0).astype(int)).max() <= 1
    # an output of another size (x2) is resized back to the input size
    up = tmp_path / "up.pt"
    torch.jit.save(torch.jit.script(_Upscale()), str(up))
    out2 = load_restorer(up)(batch)
    assert out2.shape == batch.shape
    with pytest.raises(ShapeError):
        restore(batch[..., 0])


def test_restoration_hook_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_restorer(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="not a TorchScript file"):
        load_restorer(bad)


def test_restoration_hook_onnx(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = tmp_path / "halve.onnx"
    torch.onnx.export(_Halve(), (torch.rand(1, 3, 112, 112),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False)
    out = load_restorer(path)(np.stack([IMG, IMG]))
    assert out.shape == (2, 112, 112, 3)
    assert np.abs(out.astype(int) - np.round(IMG / 2.0).astype(int)).max() <= 1
