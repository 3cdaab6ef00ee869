"""feature_mask: the exact area mean of the full-resolution visibility."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from occtool.augment import build_occluder, feature_mask
from occtool.errors import ShapeError


def slow_area_mean(vis: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Reference: integrate each output cell over its footprint, pixel by pixel."""
    h, w = vis.shape
    sy, sx = h / out_h, w / out_w
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            y0, y1, x0, x1 = i * sy, (i + 1) * sy, j * sx, (j + 1) * sx
            total = 0.0
            for y in range(int(np.floor(y0)), int(np.ceil(y1))):
                wy = min(y1, y + 1) - max(y0, y)
                for x in range(int(np.floor(x0)), int(np.ceil(x1))):
                    wx = min(x1, x + 1) - max(x0, x)
                    total += wy * wx * vis[y, x]
            out[i, j] = total / (sy * sx)
    return out


def test_112_to_7_is_the_mean_of_16x16_blocks():
    rng = np.random.default_rng(0)
    vis = rng.random((112, 112)).astype(np.float32)
    got = feature_mask(vis)
    assert got.shape == (7, 7) and got.dtype == np.float32
    np.testing.assert_allclose(got, vis.reshape(7, 16, 7, 16).mean(axis=(1, 3)), atol=1e-6)


@pytest.mark.parametrize("name", ["medical_mask", "sunglasses", "rectangles", "steam"])
def test_7x7_of_an_occluder_is_the_area_mean_of_its_mask(name, face):
    if name == "medical_mask":
        from tests.conftest import shared_or_skip

        shared_or_skip("occluders", "masktheface", "masks.cfg")
    vis = build_occluder(name)(face, rng=np.random.default_rng(4)).visibility
    np.testing.assert_allclose(feature_mask(vis), vis.reshape(7, 16, 7, 16).mean(axis=(1, 3)), atol=1e-6)


@pytest.mark.parametrize("shape,size", [((100, 90), (7, 7)), ((250, 250), (7, 7)), ((113, 61), (5, 9)), ((20, 30), (7, 7))])
def test_non_divisible_sizes_match_the_slow_reference_and_inter_area(shape, size):
    rng = np.random.default_rng(1)
    vis = rng.random(shape).astype(np.float32)
    got = feature_mask(vis, size)
    np.testing.assert_allclose(got, slow_area_mean(vis.astype(np.float64), *size), atol=1e-6)
    np.testing.assert_allclose(got, cv2.resize(vis, (size[1], size[0]), interpolation=cv2.INTER_AREA), atol=1e-5)


def test_batch_dims_constants_and_bad_shapes():
    vis = np.random.default_rng(2).random((3, 112, 112)).astype(np.float32)
    got = feature_mask(vis)
    assert got.shape == (3, 7, 7)
    np.testing.assert_allclose(got[1], feature_mask(vis[1]), atol=1e-7)
    np.testing.assert_array_equal(feature_mask(np.ones((112, 112), np.float32)), np.ones((7, 7), np.float32))
    np.testing.assert_array_equal(feature_mask(np.zeros((50, 50), np.float32)), np.zeros((7, 7), np.float32))
    with pytest.raises(ShapeError):
        feature_mask(np.ones(5))
    with pytest.raises(ShapeError):
        feature_mask(np.ones((4, 4)), (0, 7))
