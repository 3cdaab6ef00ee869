"""preprocess / resize_to / InputSpec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from occtool.errors import ShapeError
from occtool.models import DTypeError, InputSpec, preprocess, resize_to


def test_numpy_and_torch_agree_and_normalise():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(3, 112, 112, 3), dtype=np.uint8)
    spec = InputSpec(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    a = preprocess(imgs, spec)
    b = preprocess(torch.from_numpy(imgs).permute(0, 3, 1, 2), spec)
    assert a.shape == (3, 3, 112, 112) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    expected = (imgs[1, 5, 7, 2] / 255.0 - 0.406) / 0.225
    assert abs(float(a[1, 2, 5, 7]) - expected) < 1e-6
    single = preprocess(imgs[0], spec)
    torch.testing.assert_close(single, a[:1])


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_numpy_table_path_is_bit_identical_to_the_torch_formula(order):
    """numpy input goes through a cv2.LUT table; it must equal the torch formula exactly, for every
    level in every channel, and for a non-contiguous (strided) batch."""
    spec = InputSpec(channel_order=order, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    levels = np.arange(256, dtype=np.uint8)
    imgs = np.stack(np.meshgrid(levels[:112], levels[-112:], indexing="ij"), -1)  # [112, 112, 2]
    imgs = np.concatenate([imgs, imgs[..., :1][::-1]], -1)[None].repeat(3, 0)
    imgs[1] = np.random.default_rng(1).integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    imgs[2] = np.arange(112 * 112 * 3, dtype=np.int64).reshape(112, 112, 3) % 256
    strided = np.repeat(imgs, 2, axis=2)[:, :, ::2]  # same pixels, not contiguous
    for x in (imgs, strided):
        a = preprocess(x, spec)
        b = preprocess(torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2), spec)
        assert a.is_contiguous() and torch.equal(a, b)


def test_bgr_flips_channels():
    img = np.zeros((112, 112, 3), np.uint8)
    img[..., 0] = 255  # red
    rgb = preprocess(img, InputSpec(channel_order="RGB"))
    bgr = preprocess(img, InputSpec(channel_order="BGR"))
    assert float(rgb[0, 0].mean()) == 1.0 and float(rgb[0, 2].mean()) == -1.0
    assert float(bgr[0, 2].mean()) == 1.0 and float(bgr[0, 0].mean()) == -1.0


def test_wrong_size_names_expected_and_got():
    with pytest.raises(ShapeError, match=r"expected size 112x112.*got 100x90"):
        preprocess(np.zeros((100, 90, 3), np.uint8), InputSpec())


def test_wrong_layout_and_dtype():
    with pytest.raises(ShapeError, match=r"expected numpy \[H, W, 3\].*got \(112, 112, 4\)"):
        preprocess(np.zeros((112, 112, 4), np.uint8), InputSpec())
    with pytest.raises(DTypeError, match=r"expected dtype uint8.*got float32"):
        preprocess(np.zeros((112, 112, 3), np.float32), InputSpec())
    with pytest.raises(DTypeError, match=r"expected dtype torch.uint8.*got torch.float32"):
        preprocess(torch.zeros(1, 3, 112, 112), InputSpec())
    with pytest.raises(ShapeError, match=r"got \(1, 112, 112, 3\)"):
        preprocess(torch.zeros(1, 112, 112, 3, dtype=torch.uint8), InputSpec())


def test_resize_to_numpy_and_torch():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(150, 130, 3), dtype=np.uint8)
    out = resize_to(img, (112, 112))
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8
    assert resize_to(img[None], (112, 112)).shape == (1, 112, 112, 3)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()
    tout = resize_to(t, (112, 112))
    assert tout.shape == (1, 3, 112, 112) and tout.dtype == torch.uint8
    same = resize_to(out, (112, 112))
    assert same is out
    # flat colour stays flat
    flat = np.full((60, 60, 3), 77, np.uint8)
    assert (resize_to(flat, (112, 112)) == 77).all()


def test_input_spec_validation_and_roundtrip():
    with pytest.raises(ValueError, match="channel_order"):
        InputSpec(channel_order="RGBA")
    spec = InputSpec(channel_order="BGR", mean=(0.1, 0.2, 0.3), std=(1, 2, 3))
    assert InputSpec.from_dict(spec.to_dict()) == spec
