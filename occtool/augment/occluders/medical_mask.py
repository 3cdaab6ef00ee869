"""Medical masks from the MaskTheFace PNG templates, fitted to 5 landmarks.

`masks.cfg` gives, for every template, six anchor points in template pixels:
a / c = the face contour left / right at nose-tip height, b = the middle of the nose bridge,
d / f = the contour at the bottom lip, e = the chin. MaskTheFace measures those six points on
68 dlib landmarks; here they are estimated from 5 landmarks with a small head model (face
contour a cylinder behind the eye plane, nose and chin in front of it), so a turned face (nose
off the eye midpoint) moves the near contour in and the far one out. The template is chosen by
that nose offset: `<type>_left` when the nose sits left of the eye midpoint by more than
`turn_threshold` inter-ocular distances, `<type>_right` when right, else the frontal one.
The homography is the least-squares fit of the six anchors (cv2.findHomography, method 0).

Templates are decoded once per process (and per working resolution) and cached: the RGBA is
pre-multiplied and pre-shrunk with INTER_AREA to about twice the face width, so the perspective
warp samples it without aliasing.
"""

from __future__ import annotations

import configparser
import functools
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from occtool.augment.base import FaceFrame, Occluder, region_stats
from occtool.augment.occluders.registry import register_occluder
from occtool.errors import DataError
from occtool.resources import shared_path

MASK_TYPES = ("surgical", "surgical_blue", "surgical_green", "N95", "KN95", "cloth", "gas")
_ANCHOR_KEYS = ("mask_a", "mask_b", "mask_c", "mask_d", "mask_e", "mask_f")

# Head model (units: inter-ocular distance d along the eye line, eye->mouth distance h down).
_NOSE_DEPTH = 0.55  # nose tip in front of the eye plane (d): nose offset o = depth * tan(yaw)
_CONTOUR_DEPTH = -0.55  # cylinder axis of the face contour behind the eye plane (d)
_HALF_WIDTH_NOSE = 1.05  # contour half-width at nose-tip height (d), frontal
_HALF_WIDTH_LIP = 0.86  # contour half-width at the bottom lip (d), frontal
_V_BRIDGE, _V_NOSE, _V_LIP, _V_CHIN = 0.24, 0.5, 1.2, 1.55
_BRIDGE_DEPTH, _CHIN_DEPTH = 0.35, 0.2


def default_templates_dir() -> Path:
    return shared_path("occluders", "masktheface")


@functools.lru_cache(maxsize=8)
def load_mask_config(root: str) -> dict[str, tuple[Path, np.ndarray]]:
    """{template name: (PNG path, anchors [6, 2] in order a..f)} from `<root>/masks.cfg`."""
    root_p = Path(root)
    cfg_path = root_p / "masks.cfg"
    if not cfg_path.is_file():
        raise DataError(f"MaskTheFace config not found: {cfg_path}")
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    try:
        parser.read(cfg_path)
    except configparser.Error as exc:
        raise DataError(f"{cfg_path} is not a valid MaskTheFace config: {exc}") from None
    out: dict[str, tuple[Path, np.ndarray]] = {}
    for name in parser.sections():
        sec = parser[name]
        if "template" not in sec or not all(k in sec for k in _ANCHOR_KEYS):
            continue
        png = root_p / "templates" / Path(sec["template"]).name
        try:
            anchors = np.array([[float(v) for v in sec[k].split(",")] for k in _ANCHOR_KEYS], np.float64)
        except ValueError:
            raise DataError(f"{cfg_path} [{name}]: anchors must be 'x, y' numbers") from None
        out[name] = (png, anchors.reshape(6, 2))
    return out


def _read_template(png: str) -> np.ndarray:
    """Pre-multiplied RGBA float32 [H, W, 4] (RGB 0-255 times alpha, alpha 0-1), full size."""
    data = np.fromfile(png, dtype=np.uint8) if Path(png).is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data is not None else None
    if img is None or img.ndim != 3 or img.shape[2] != 4:
        raise DataError(f"mask template missing or not an RGBA PNG: {png}")
    rgba = img[..., [2, 1, 0, 3]].astype(np.float32)
    alpha = rgba[..., 3:4] / 255.0
    return np.concatenate([rgba[..., :3] * alpha, alpha], axis=2)


@functools.lru_cache(maxsize=128)
def _template_at(png: str, width: int) -> tuple[np.ndarray, float]:
    """(template shrunk with INTER_AREA to `width` pixels wide (or full size), scale factor).

    Cached per process and working width; the full-size decode is not kept.
    """
    full = _read_template(png)
    if width >= full.shape[1]:
        full.setflags(write=False)
        return full, 1.0
    scale = width / full.shape[1]
    height = max(1, int(round(full.shape[0] * scale)))
    small = cv2.resize(full, (width, height), interpolation=cv2.INTER_AREA)
    small.setflags(write=False)
    return small, scale


def face_anchor_points(frame: FaceFrame) -> tuple[np.ndarray, float]:
    """The six MaskTheFace face points (a..f, image coords [6, 2]) and tan(yaw) estimate."""
    uv, t = face_anchor_uv(frame)
    return frame.to_img(uv), t


def face_anchor_uv(frame: FaceFrame) -> tuple[np.ndarray, float]:
    """The six MaskTheFace face points a..f in face-frame (u in d, v in h) coords [6, 2], tan(yaw)."""
    t = float(np.clip(frame.nose_offset / _NOSE_DEPTH, -1.5, 1.5))
    grow = float(np.sqrt(1.0 + t * t))
    center = _CONTOUR_DEPTH * t
    uv = np.array(
        [
            [center - _HALF_WIDTH_NOSE * grow, _V_NOSE],  # a
            [_BRIDGE_DEPTH * t, _V_BRIDGE],  # b
            [center + _HALF_WIDTH_NOSE * grow, _V_NOSE],  # c
            [center - _HALF_WIDTH_LIP * grow, _V_LIP],  # d
            [_CHIN_DEPTH * t, _V_CHIN],  # e
            [center + _HALF_WIDTH_LIP * grow, _V_LIP],  # f
        ]
    )
    return uv, t


def template_variant(mask_type: str, nose_offset: float, turn_threshold: float, available) -> str:
    if nose_offset < -turn_threshold and f"{mask_type}_left" in available:
        return f"{mask_type}_left"
    if nose_offset > turn_threshold and f"{mask_type}_right" in available:
        return f"{mask_type}_right"
    return mask_type


def warp_template(png, anchors: np.ndarray, dst: np.ndarray, shape_hw: tuple[int, int], *, what: str = ""):
    """Warp a template (anchors a..f [6, 2] in its pixels) onto the image points `dst` [6, 2]:
    (layer float32 [H, W, 3] 0-255, alpha float32 [H, W] in [0, 1])."""
    hgt, wid = shape_hw
    face_width = float(np.hypot(*(dst[2] - dst[0])))
    work = 1 << int(np.ceil(np.log2(max(64.0, 2.5 * face_width))))
    tpl, scale = _template_at(str(png), work)
    src = anchors * scale
    hom, _ = cv2.findHomography(src.astype(np.float32), dst.astype(np.float32), 0)
    if hom is None or not np.isfinite(hom).all():
        raise DataError(f"could not fit mask template {what}")
    warped = cv2.warpPerspective(
        tpl, hom, (wid, hgt), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    alpha = np.clip(warped[..., 3], 0.0, 1.0)
    layer = warped[..., :3] / np.maximum(alpha, 1e-6)[..., None]
    return layer, alpha


@register_occluder(default_weight=0.3)
class MedicalMask(Occluder):
    """A MaskTheFace template warped onto the lower face (opaque; visibility = 1 - alpha)."""

    name = "medical_mask"
    occlusion_class = "opaque"

    def __init__(
        self,
        *,
        types: Sequence[str] = MASK_TYPES,
        templates_dir: str | Path | None = None,
        turn_threshold: float = 0.12,
        brightness: tuple[float, float] = (0.9, 1.05),
        recolor_cloth: float = 0.5,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        root = Path(templates_dir) if templates_dir is not None else default_templates_dir()
        self.root = str(root)
        self.templates = load_mask_config(self.root)
        types = tuple(types)
        unknown = [t for t in types if t not in self.templates]
        if unknown or not types:
            raise DataError(
                f"medical mask types {unknown or '(none)'} not in {root}/masks.cfg; "
                f"available: {', '.join(t for t in MASK_TYPES if t in self.templates)}"
            )
        self.types = types
        self.turn_threshold = float(turn_threshold)
        self.brightness = (float(brightness[0]), float(brightness[1]))
        self.recolor_cloth = float(recolor_cloth)

    @classmethod
    def from_config(cls, config, *, p: float = 1.0) -> "MedicalMask":
        if config is None:
            return cls(p=p)
        m = config.medical_mask
        return cls(types=m.types, templates_dir=m.templates_dir, turn_threshold=m.turn_threshold,
                   brightness=tuple(m.brightness), recolor_cloth=m.recolor_cloth, p=p)

    def _apply(self, image, frame: FaceFrame, rng):
        hgt, wid = image.shape[:2]
        mask_type = self.types[int(rng.integers(len(self.types)))]
        variant = template_variant(mask_type, frame.nose_offset, self.turn_threshold, self.templates)
        png, anchors = self.templates[variant]
        dst, _ = face_anchor_points(frame)
        layer, alpha = warp_template(png, anchors, dst, (hgt, wid), what=f"{variant} to the landmarks {frame.landmarks.tolist()}")
        # Light the mask like the face: scale by the lower face's brightness (mildly), jitter.
        _, lum = region_stats(image, frame, (-0.8, 0.8), (0.1, 1.0))
        shade = float(np.clip((lum / 150.0) ** 0.5, 0.6, 1.05)) * float(rng.uniform(*self.brightness))
        detail = variant
        if mask_type == "cloth" and rng.random() < self.recolor_cloth:
            colour = rng.uniform(40, 230, size=3).astype(np.float32)
            grey = layer.mean(axis=2, keepdims=True)
            ref = float(grey[alpha > 0.5].mean()) if (alpha > 0.5).any() else 1.0
            layer = np.clip(grey / max(ref, 1.0), 0.0, 2.0) * colour
            detail += "+recolored"
        layer = np.clip(layer * shade, 0, 255)
        return layer, alpha, detail
