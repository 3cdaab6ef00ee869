"""Defect 5: 16-bit PNGs are scaled to 8 bits by the shared decoder (not clipped to white)."""

from __future__ import annotations

import cv2
import numpy as np

from occtool.data.images import read_image_rgb


def _expected(v: np.ndarray) -> np.ndarray:
    return np.round(v.astype(np.float64) * 255 / 65535).astype(np.uint8)


def test_16bit_grey_png(tmp_path):
    grey = (np.arange(32 * 48).reshape(32, 48) * 40).astype(np.uint16)  # 0 .. 61400
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    got = read_image_rgb(tmp_path / "g.png")
    assert got.shape == (32, 48, 3) and got.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], _expected(grey))


def test_16bit_rgb_png(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 65536, size=(20, 30, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c.png"), np.ascontiguousarray(rgb[..., ::-1]))
    np.testing.assert_array_equal(read_image_rgb(tmp_path / "c.png"), _expected(rgb))


def test_8bit_is_unchanged(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "e.png"), np.ascontiguousarray(rgb[..., ::-1]))
    np.testing.assert_array_equal(read_image_rgb(tmp_path / "e.png"), rgb)
