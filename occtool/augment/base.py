"""Shared machinery of the occluders: the result type, exact alpha compositing, the face frame,
anti-aliased shape rendering, the area-mean feature mask and the visibility PNG format.

Visibility convention (DESIGN): 1 = visible, 0 = occluded, continuous in [0, 1]. Every occluder
paints a layer (colour [H, W, 3]) with an opacity alpha [H, W] and composites it with
`composite`, which guarantees the contract the tests check:

- visibility = 1 - alpha, quantised to multiples of 1/255 (so the 8-bit mask PNG stores it
  exactly and reading it back gives the same float32 values);
- a pixel changes <=> its visibility < 1 (outside the occluder the image is copied bit for bit;
  inside, a pixel whose blended value happens to equal the original is nudged by one grey level).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import cv2
import numpy as np

from occtool.errors import DataError, ShapeError, check_shape

OcclusionClass = Literal["none", "opaque", "transparent"]
OCCLUSION_CLASSES = ("none", "opaque", "transparent")


@dataclass
class OcclusionResult:
    """One occluded face.

    image: uint8 RGB [H, W, 3]; visibility: float32 [H, W] in [0, 1] (1 visible), multiples of
    1/255; occluder: the occluder's name ("none" when nothing was applied); occlusion_class:
    none | opaque | transparent; detail: a short free-form description (template, fill, ...).
    """

    image: np.ndarray
    visibility: np.ndarray
    occluder: str
    occlusion_class: str
    detail: str = ""

    @property
    def occluded_fraction(self) -> float:
        """Mean occlusion 1 - mean(visibility) (a half-transparent pixel counts one half)."""
        return float(1.0 - self.visibility.mean(dtype=np.float64))

    @property
    def covered_fraction(self) -> float:
        """Fraction of pixels touched by the occluder (visibility < 1)."""
        return float((self.visibility < 1.0).mean())


def clean_result(image: np.ndarray) -> OcclusionResult:
    h, w = image.shape[:2]
    return OcclusionResult(image.copy(), np.ones((h, w), np.float32), "none", "none", "")


def check_image(image: np.ndarray) -> np.ndarray:
    check_shape(
        "image",
        getattr(image, "shape", ()),
        "uint8 RGB [H, W, 3]",
        isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8,
    )
    return image


def check_landmarks(landmarks) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    check_shape("landmarks", pts.shape, "[5, 2] (x, y) points", pts.shape == (5, 2) and bool(np.isfinite(pts).all()))
    return pts


# ---------------------------------------------------------------------------------------------
# Compositing


def composite(image: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blend `layer` (float [H, W, 3], 0-255) over `image` with opacity `alpha` (float [H, W]).

    Returns (image uint8 [H, W, 3], visibility float32 [H, W]) with visibility = 1 - alpha
    quantised to 1/255 steps and the blend done with that same quantised alpha, so that
    visibility is exactly 1 - opacity and pixels changed <=> visibility < 1.
    """
    a8 = np.clip(np.rint(np.asarray(alpha, np.float32) * 255.0), 0, 255).astype(np.uint8)
    visibility = (np.float32(255.0) - a8.astype(np.float32)) / np.float32(255.0)
    out = image.copy()
    rows, cols = np.flatnonzero(a8.any(axis=1)), np.flatnonzero(a8.any(axis=0))
    if rows.size == 0:
        return out, visibility
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # work on the touched box only
    a8b = a8[box]
    aq = a8b.astype(np.float32)[..., None] / np.float32(255.0)
    src = image[box].astype(np.float32)
    blend = src + (np.asarray(layer[box], np.float32) - src) * aq
    blend = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    untouched = a8b == 0
    blend[untouched] = image[box][untouched]
    same = ~untouched & np.all(blend == image[box], axis=2)
    if same.any():
        g = blend[..., 1]
        gv = g[same]
        g[same] = np.where(gv < 255, gv + 1, gv - 1).astype(np.uint8)
    out[box] = blend
    return out, visibility


def quantize_visibility(visibility: np.ndarray) -> np.ndarray:
    """float visibility -> the float32 values an 8-bit mask PNG stores (k / 255)."""
    v8 = np.clip(np.rint(np.asarray(visibility, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return v8.astype(np.float32) / np.float32(255.0)


def visibility_to_png8(visibility: np.ndarray) -> np.ndarray:
    """float visibility [H, W] -> uint8 mask (255 visible, 0 occluded)."""
    return np.clip(np.rint(np.asarray(visibility, np.float32) * 255.0), 0, 255).astype(np.uint8)


def encode_mask_png(visibility: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", visibility_to_png8(visibility), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - cv2 always encodes a uint8 2D array
        raise DataError("could not encode a mask PNG")
    return buf.tobytes()


def read_visibility_png(path: str | Path) -> np.ndarray:
    """Read an 8-bit mask PNG (255 visible) -> float32 [H, W] in [0, 1]."""
    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise DataError(f"mask not found: {path}")
    m = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if m is None:
        raise DataError(f"mask does not decode: {path}")
    if m.ndim == 3:
        m = m[..., 0]
    if m.dtype != np.uint8:
        raise DataError(f"mask {path}: expected an 8-bit PNG, got {m.dtype}")
    return m.astype(np.float32) / np.float32(255.0)


# ---------------------------------------------------------------------------------------------
# Feature-resolution mask (exact area mean)


@functools.lru_cache(maxsize=64)
def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights: output cell i averages input [i*n_in/n_out, (i+1)*n_in/n_out)."""
    scale = n_in / n_out
    lo = np.arange(n_out, dtype=np.float64)[:, None] * n_in / n_out
    hi = np.arange(1, n_out + 1, dtype=np.float64)[:, None] * n_in / n_out
    j = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    weights = overlap / scale
    weights.setflags(write=False)
    return weights


def feature_mask(visibility: np.ndarray, size_hw: Sequence[int] = (7, 7)) -> np.ndarray:
    """Area mean of a visibility map [..., H, W] onto the feature grid -> float32 [..., h, w].

    Each output cell is the exact mean of the input over the cell's footprint (fractional pixels
    weighted by their overlap): for 112 -> 7 the mean of each 16x16 block; for sizes that do not
    divide, what cv2.resize(..., INTER_AREA) computes when shrinking.
    """
    vis = np.asarray(visibility)
    if vis.ndim < 2 or vis.shape[-1] < 1 or vis.shape[-2] < 1:
        raise ShapeError(f"visibility: expected [..., H, W], got {tuple(vis.shape)}")
    h, w = int(size_hw[0]), int(size_hw[1])
    if h < 1 or w < 1:
        raise ShapeError(f"feature mask size: expected positive (h, w), got {tuple(size_hw)}")
    wy = _area_weights(vis.shape[-2], h)
    wx = _area_weights(vis.shape[-1], w)
    out = wy @ vis.astype(np.float64) @ wx.T
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Face frame and rendering


class FaceFrame:
    """Coordinates relative to 5 landmarks.

    Origin: the eye midpoint; `ex` along the eye line (image left -> right), `ey` perpendicular,
    pointing down the face. `d` = inter-ocular distance, `h` = eye line -> mouth midpoint
    distance along `ey`. `to_img(u, v)` maps u in units of d and v in units of h;
    `to_img_iso` maps both in units of d (shapes that must keep their aspect ratio).
    `nose_offset`: the nose tip's offset from the eye midpoint along the eye line, in units of
    d (> 0: nose to the image right, a face turned towards the image right).
    """

    def __init__(self, landmarks: np.ndarray):
        lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
        le, re, nose, ml, mr = lm
        self.landmarks = lm
        self.center = (le + re) / 2.0
        v = re - le
        d = float(np.hypot(*v))
        if d < 1e-3:
            v, d = np.array([1.0, 0.0]), 1e-3
        self.ex = v / max(d, 1e-3)
        self.ey = np.array([-self.ex[1], self.ex[0]])
        mouth = (ml + mr) / 2.0
        self.d = max(d, 1.0)
        self.h = max(float((mouth - self.center) @ self.ey), 0.5 * self.d)
        self.nose_offset = float((nose - self.center) @ self.ex) / self.d
        self.angle_deg = float(np.degrees(np.arctan2(self.ex[1], self.ex[0])))

    def to_img(self, uv) -> np.ndarray:
        uv = np.asarray(uv, dtype=np.float64)
        return self.center + uv[..., :1] * self.d * self.ex + uv[..., 1:2] * self.h * self.ey

    def to_img_iso(self, uv) -> np.ndarray:
        uv = np.asarray(uv, dtype=np.float64)
        return self.center + (uv[..., :1] * self.ex + uv[..., 1:2] * self.ey) * self.d

    def uv_grid(self, shape_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(u, v) of every pixel centre, u in units of d, v in units of h: two float32 [H, W]."""
        hgt, wid = shape_hw
        ys, xs = np.mgrid[0:hgt, 0:wid].astype(np.float32)
        dx, dy = xs - np.float32(self.center[0]), ys - np.float32(self.center[1])
        u = (dx * np.float32(self.ex[0]) + dy * np.float32(self.ex[1])) / np.float32(self.d)
        v = (dx * np.float32(self.ey[0]) + dy * np.float32(self.ey[1])) / np.float32(self.h)
        return u, v


_SHIFT = 4  # sub-pixel bits for cv2 drawing


def _fix(points: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def fill_polygons(canvas: np.ndarray, polygons, value: int = 255) -> np.ndarray:
    """Fill each polygon (float [N, 2] image points) into a uint8 canvas, anti-aliased (union)."""
    for poly in polygons:
        cv2.fillPoly(canvas, [_fix(poly)], int(value), lineType=cv2.LINE_AA, shift=_SHIFT)
    return canvas


def stroke_polyline(canvas: np.ndarray, points, thickness: float, value: int = 255, closed: bool = False) -> np.ndarray:
    """Draw an anti-aliased polyline of a given (pixel) thickness into a uint8 canvas."""
    t = max(1, int(round(thickness)))
    cv2.polylines(canvas, [_fix(points)], closed, int(value), thickness=t, lineType=cv2.LINE_AA, shift=_SHIFT)
    return canvas


def coverage(shape_hw: tuple[int, int], polygons) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] (float32 [H, W]) of the union of polygons."""
    canvas = np.zeros(shape_hw, np.uint8)
    fill_polygons(canvas, polygons)
    return canvas.astype(np.float32) / 255.0


def superellipse(center, a: float, b_top: float, b_bottom: float | None = None, n: float = 2.0, *, points: int = 48):
    """Points of |x/a|^n + |y/b|^n = 1 (b_top above the centre, b_bottom below), local coords."""
    b_bottom = b_top if b_bottom is None else b_bottom
    t = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = a * np.sign(c) * np.abs(c) ** (2.0 / n)
    y = np.where(s < 0, b_top, b_bottom) * np.sign(s) * np.abs(s) ** (2.0 / n)
    return np.stack([x, y], axis=1) + np.asarray(center, np.float64)


def capsule(p0, p1, r0: float, r1: float | None = None, *, points: int = 10) -> np.ndarray:
    """Polygon of a (tapered) capsule from p0 (radius r0) to p1 (radius r1)."""
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    r1 = r0 if r1 is None else r1
    axis = p1 - p0
    length = float(np.hypot(*axis))
    base = np.arctan2(axis[1], axis[0]) if length > 1e-9 else 0.0
    a1 = base + np.linspace(-np.pi / 2, np.pi / 2, points)
    a0 = base + np.linspace(np.pi / 2, 3 * np.pi / 2, points)
    cap1 = p1 + r1 * np.stack([np.cos(a1), np.sin(a1)], axis=1)
    cap0 = p0 + r0 * np.stack([np.cos(a0), np.sin(a0)], axis=1)
    return np.concatenate([cap1, cap0], axis=0)


def smooth_noise(rng: np.random.Generator, shape_hw: tuple[int, int], grid: int) -> np.ndarray:
    """Low-frequency noise in [0, 1] (float32 [H, W]): a random grid x grid field, bicubic."""
    hgt, wid = shape_hw
    g = max(2, int(grid))
    field = rng.random((g + 2, g + 2)).astype(np.float32)
    big = cv2.resize(field, (wid + 2 * max(1, wid // g), hgt + 2 * max(1, hgt // g)), interpolation=cv2.INTER_CUBIC)
    oy, ox = max(1, hgt // g), max(1, wid // g)
    out = big[oy : oy + hgt, ox : ox + wid]
    lo, hi = float(out.min()), float(out.max())
    return ((out - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def edge_distance(mask: np.ndarray) -> np.ndarray:
    """Distance (pixels) of each inside pixel to the outside of a boolean mask, float32."""
    m = np.pad(mask.astype(np.uint8), 1)
    dist = cv2.distanceTransform(m, cv2.DIST_L2, 3)
    return dist[1:-1, 1:-1].astype(np.float32)


def keypoint_visibility(visibility: np.ndarray, landmarks, *, threshold: float = 0.5) -> list[int]:
    """COCO keypoint visibility of each landmark: 2 visible, 1 covered (visibility < threshold
    at the landmark's pixel; points outside the frame are clipped to its border)."""
    pts = np.asarray(landmarks, np.float64).reshape(-1, 2)
    hgt, wid = visibility.shape[:2]
    xs = np.clip(np.rint(pts[:, 0]), 0, wid - 1).astype(int)
    ys = np.clip(np.rint(pts[:, 1]), 0, hgt - 1).astype(int)
    return [2 if visibility[y, x] >= threshold else 1 for x, y in zip(xs, ys)]


def luminance(image: np.ndarray) -> np.ndarray:
    return image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114


def region_stats(image: np.ndarray, frame: FaceFrame, u_range, v_range) -> tuple[np.ndarray, float]:
    """(median RGB, mean luminance) of the image inside a face-frame box (whole image if empty)."""
    corners = frame.to_img(
        np.array([[u_range[0], v_range[0]], [u_range[1], v_range[0]], [u_range[0], v_range[1]], [u_range[1], v_range[1]]])
    )
    hgt, wid = image.shape[:2]
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, [wid - 1, hgt - 1])
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 1, [wid, hgt])
    patch = image[y0:y1, x0:x1].reshape(-1, 3)
    if patch.shape[0] < 4:
        patch = image.reshape(-1, 3)
    patch = patch.astype(np.float32)
    return np.median(patch, axis=0), float(luminance(patch).mean())


# ---------------------------------------------------------------------------------------------
# The occluder interface


class Occluder:
    """Base class: probability-gated, seeded through an explicit np.random.Generator.

    `__call__(image uint8 RGB [H, W, 3], *, landmarks=None | [5, 2], rng) -> OcclusionResult`.
    With probability 1 - p the image comes back unchanged (occluder "none"). Without landmarks
    the canonical ArcFace template scaled to the image size is used (aligned crops).
    Subclasses implement `_apply(image, frame, rng) -> (layer, alpha, detail)`; a family with
    settings in `SynthesisConfig` overrides `from_config`.
    """

    name = "base"
    occlusion_class: str = "opaque"

    def __init__(self, *, p: float = 1.0):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"{self.name}: probability p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, image: np.ndarray, *, landmarks=None, rng: np.random.Generator) -> OcclusionResult:
        check_image(image)
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"{self.name}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        if self.p < 1.0 and rng.random() >= self.p:
            return clean_result(image)
        if landmarks is None:
            from occtool.data.landmarks import template_for_size

            lm = template_for_size(image.shape[:2])
        else:
            lm = check_landmarks(landmarks)
        frame = FaceFrame(lm)
        layer, alpha, detail = self._apply(image, frame, rng)
        out, vis = composite(image, layer, alpha)
        return OcclusionResult(out, vis, self.name, self.occlusion_class, detail)

    @classmethod
    def from_config(cls, config, *, p: float = 1.0) -> "Occluder":
        """The occluder with its settings from a `SynthesisConfig` (None: the class defaults)."""
        return cls(p=p)

    def _apply(self, image: np.ndarray, frame: FaceFrame, rng: np.random.Generator):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"
