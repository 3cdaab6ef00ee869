"""Opaque procedural occluders: random rectangles, sunglasses, a hand/arm, a scarf.

Shapes are placed in the face frame of the landmarks (see `FaceFrame`) and rendered with
anti-aliased edges; inside a shape the opacity is 1 (visibility 0), on its 1-pixel rim the
coverage fraction.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from occtool.augment.base import (
    FaceFrame,
    Occluder,
    capsule,
    coverage,
    edge_distance,
    region_stats,
    smooth_noise,
    stroke_polyline,
    superellipse,
)

RECT_FILLS = ("solid", "noise")


class Rectangles(Occluder):
    """1-3 axis-aligned rectangles anywhere in the image, each filled with a solid colour or noise.

    count: (min, max) number of rectangles; size: (min, max) side length as a fraction of the
    image side (width and height drawn independently); fills: among "solid", "noise".
    """

    name = "rectangles"
    occlusion_class = "opaque"

    def __init__(
        self,
        *,
        count: tuple[int, int] = (1, 3),
        size: tuple[float, float] = (0.15, 0.45),
        fills: Sequence[str] = RECT_FILLS,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        lo, hi = int(count[0]), int(count[1])
        if not 1 <= lo <= hi:
            raise ValueError(f"rectangles.count: expected 1 <= min <= max, got {tuple(count)}")
        slo, shi = float(size[0]), float(size[1])
        if not 0.0 < slo <= shi <= 1.0:
            raise ValueError(f"rectangles.size: expected 0 < min <= max <= 1, got {tuple(size)}")
        bad = [f for f in fills if f not in RECT_FILLS]
        if bad or not fills:
            raise ValueError(f"rectangles.fills: expected some of {', '.join(RECT_FILLS)}, got {list(fills)}")
        self.count, self.size, self.fills = (lo, hi), (slo, shi), tuple(fills)

    def _apply(self, image, frame, rng):
        hgt, wid = image.shape[:2]
        layer = np.zeros((hgt, wid, 3), np.float32)
        alpha = np.zeros((hgt, wid), np.float32)
        n = int(rng.integers(self.count[0], self.count[1] + 1))
        kinds = []
        for _ in range(n):
            rw = int(np.clip(round(rng.uniform(*self.size) * wid), 1, wid))
            rh = int(np.clip(round(rng.uniform(*self.size) * hgt), 1, hgt))
            x0 = int(rng.integers(0, wid - rw + 1))
            y0 = int(rng.integers(0, hgt - rh + 1))
            fill = self.fills[int(rng.integers(len(self.fills)))]
            if fill == "solid":
                layer[y0 : y0 + rh, x0 : x0 + rw] = rng.integers(0, 256, size=3)
            else:
                block = int(rng.choice([1, 2, 4]))
                noise = rng.integers(0, 256, size=(-(-rh // block), -(-rw // block), 3)).astype(np.float32)
                if rng.random() < 0.3:
                    noise[:] = noise[..., :1]
                noise = np.repeat(np.repeat(noise, block, axis=0), block, axis=1)[:rh, :rw]
                layer[y0 : y0 + rh, x0 : x0 + rw] = noise
            alpha[y0 : y0 + rh, x0 : x0 + rw] = 1.0
            kinds.append(fill)
        return layer, alpha, f"{n}x" + "+".join(kinds)


# ---------------------------------------------------------------------------------------------
# Glasses geometry (shared with the transparent eyeglasses)


def glasses_geometry(frame: FaceFrame, rng: np.random.Generator, *, sun: bool):
    """Random lens polygons (image coords), frame strokes and their stroke width (pixels).

    Lenses are centred near the eyes (face frame, units of the inter-ocular distance), shaped as
    superellipses (round to rectangular; aviators with a deeper bottom), joined by a bridge and
    with temple arms towards the ears.
    """
    a = rng.uniform(0.36, 0.46) if sun else rng.uniform(0.33, 0.44)
    b_top = rng.uniform(0.2, 0.3)
    b_bot = b_top * (rng.uniform(1.0, 1.4) if sun else rng.uniform(0.9, 1.15))
    n = rng.uniform(2.0, 4.5)
    dx = rng.uniform(0.0, 0.04)
    vc = rng.uniform(-0.02, 0.06)
    tilt = np.radians(rng.uniform(-4, 4))
    lenses = []
    for side in (-1.0, 1.0):
        pts = superellipse((0.0, 0.0), a, b_top, b_bot, n, points=56)
        c, s = np.cos(side * tilt), np.sin(side * tilt)
        pts = pts @ np.array([[c, s], [-s, c]])
        pts[:, 0] += side * (0.5 + dx)
        pts[:, 1] += vc
        lenses.append(frame.to_img_iso(pts))
    inner = 0.5 + dx - a
    bridge_v = vc - b_top * rng.uniform(0.3, 0.7)
    bridge = frame.to_img_iso(
        np.array([[-inner - 0.02, bridge_v], [-inner * 0.4, bridge_v - 0.04], [inner * 0.4, bridge_v - 0.04], [inner + 0.02, bridge_v]])
    )
    outer = 0.5 + dx + a
    temples = [
        frame.to_img_iso(np.array([[side * (outer - 0.02), vc - b_top * 0.6], [side * 1.45, vc - b_top * 0.45]]))
        for side in (-1.0, 1.0)
    ]
    stroke = frame.d * (rng.uniform(0.04, 0.08) if sun else rng.uniform(0.025, 0.055))
    return lenses, bridge, temples, max(1.0, stroke)


def _frame_coverage(shape_hw, lenses, bridge, temples, stroke) -> np.ndarray:
    canvas = np.zeros(shape_hw, np.uint8)
    for lens in lenses:
        stroke_polyline(canvas, lens, stroke, closed=True)
    stroke_polyline(canvas, bridge, stroke * 1.2)
    for t in temples:
        stroke_polyline(canvas, t, stroke * 1.1)
    return canvas.astype(np.float32) / 255.0


FRAME_COLOURS = np.array([[15, 15, 18], [40, 28, 20], [150, 120, 60], [175, 175, 180], [90, 50, 30], [120, 20, 30]], np.float32)


def _diagonal_glare(shape_hw, frame: FaceFrame, rng) -> np.ndarray:
    """A soft diagonal highlight streak in [0, 1] (float32 [H, W])."""
    u, v = frame.uv_grid(shape_hw)
    ang = np.radians(rng.uniform(30, 60)) * rng.choice([-1, 1])
    proj = u * np.cos(ang) + v * (frame.h / frame.d) * np.sin(ang)
    centre = rng.uniform(-0.5, 0.5)
    width = rng.uniform(0.06, 0.15)
    return np.exp(-(((proj - centre) / width) ** 2)).astype(np.float32)


class Sunglasses(Occluder):
    """Dark opaque lenses over the eyes, with frame, bridge and temple arms."""

    name = "sunglasses"
    occlusion_class = "opaque"

    LENS_COLOURS = np.array([[12, 12, 14], [35, 25, 15], [25, 35, 28], [30, 45, 85], [60, 40, 20], [70, 70, 75]], np.float32)

    def _apply(self, image, frame, rng):
        shape = image.shape[:2]
        lenses, bridge, temples, stroke = glasses_geometry(frame, rng, sun=True)
        lens_cov = coverage(shape, lenses)
        frame_cov = _frame_coverage(shape, lenses, bridge, temples, stroke)
        u, v = frame.uv_grid(shape)
        base = self.LENS_COLOURS[int(rng.integers(len(self.LENS_COLOURS)))] * rng.uniform(0.8, 1.2)
        gradient = np.clip(0.7 + 0.9 * (v * frame.h / frame.d + 0.3), 0.6, 1.6)[..., None]  # lighter at the bottom
        glare = _diagonal_glare(shape, frame, rng)[..., None] * rng.uniform(40, 110)
        lens_layer = base * gradient + glare
        if rng.random() < 0.25:  # mirrored lenses: a bright blue/silver reflection
            sky = smooth_noise(rng, shape, 3)[..., None]
            lens_layer = lens_layer * 0.4 + (np.array([120, 150, 190], np.float32) * (0.6 + 0.6 * sky)) * 0.6
        frame_colour = FRAME_COLOURS[int(rng.integers(len(FRAME_COLOURS)))]
        layer = lens_layer * (1 - frame_cov[..., None]) + frame_colour * frame_cov[..., None]
        alpha = np.maximum(lens_cov, frame_cov)
        return np.clip(layer, 0, 255), alpha, "sunglasses"


# ---------------------------------------------------------------------------------------------
# Hand / arm

SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 167], [224, 172, 138], [198, 134, 103], [161, 102, 79], [121, 77, 56], [87, 56, 41]],
    np.float32,
)

# target (face frame u in d, v in h) and the range of finger-direction angles (degrees from up)
HAND_POSES = {
    "mouth": ((0.0, 1.0), (20.0, 70.0)),
    "nose_mouth": ((0.0, 0.75), (25.0, 80.0)),
    "chin": ((0.1, 1.45), (0.0, 35.0)),
    "left_eye": ((-0.5, 0.0), (0.0, 30.0)),
    "right_eye": ((0.5, 0.0), (0.0, 30.0)),
    "cheek": ((0.8, 0.6), (0.0, 30.0)),
}


def hand_polygons(center, up, palm_width: float, rng: np.random.Generator, *, mirror: bool):
    """Polygons (image coords) of a hand (palm, 4 fingers, thumb) and forearm.

    Local coordinates in palm widths: x across the palm (thumb side negative unless mirrored),
    y towards the finger tips. `up` is the unit image vector of +y.
    """
    up = np.asarray(up, np.float64)
    right = np.array([-up[1], up[0]]) * (-1.0 if mirror else 1.0)
    center = np.asarray(center, np.float64)

    def to_img(pts):
        pts = np.asarray(pts, np.float64)
        return center + (pts[..., :1] * right + pts[..., 1:2] * up) * palm_width

    palm = superellipse((0.0, 0.0), 0.5, 0.52, 0.55, 3.2, points=40)
    palm[:, 1] *= -1.0  # superellipse y points down; flip to "up" coordinates (symmetric anyway)
    polys = [to_img(palm)]
    finger_parts = []
    curl = rng.random() < 0.3
    spread = rng.uniform(0.0, 6.0)
    bases_x = (-0.35, -0.12, 0.12, 0.34)
    lengths = np.array([0.82, 0.93, 0.86, 0.66]) * rng.uniform(0.9, 1.1) * (0.55 if curl else 1.0)
    for i, (bx, length) in enumerate(zip(bases_x, lengths)):
        ang = np.radians((i - 1.5) * spread + rng.uniform(-3, 3))
        base = np.array([bx, 0.35])
        tip = base + length * np.array([np.sin(ang), np.cos(ang)])
        part = capsule(to_img(base), to_img(tip), 0.12 * palm_width, 0.1 * palm_width)
        polys.append(part)
        finger_parts.append((to_img(base), to_img(tip)))
    t_ang = np.radians(rng.uniform(35, 70))
    t_base = np.array([-0.42, -0.2])
    t_tip = t_base + 0.62 * np.array([-np.sin(t_ang), np.cos(t_ang)])
    polys.append(capsule(to_img(t_base), to_img(t_tip), 0.16 * palm_width, 0.12 * palm_width))
    arm = np.array([[-0.42, -0.4], [0.42, -0.4], [0.55, -6.0], [-0.55, -6.0]])
    polys.append(to_img(arm))
    return polys, finger_parts


class Hand(Occluder):
    """A hand (palm, fingers, thumb) and forearm over the mouth, nose, chin, an eye or a cheek.

    The skin colour is the face's own (median of the cheeks) or from a palette of skin tones;
    shading darkens towards the silhouette and between the fingers.
    """

    name = "hand"
    occlusion_class = "opaque"

    def __init__(self, *, poses: Sequence[str] = tuple(HAND_POSES), p: float = 1.0):
        super().__init__(p=p)
        bad = [x for x in poses if x not in HAND_POSES]
        if bad or not poses:
            raise ValueError(f"hand.poses: expected some of {', '.join(HAND_POSES)}, got {list(poses)}")
        self.poses = tuple(poses)

    def _apply(self, image, frame, rng):
        shape = image.shape[:2]
        pose = self.poses[int(rng.integers(len(self.poses)))]
        (tu, tv), (amin, amax) = HAND_POSES[pose]
        if pose == "cheek" and rng.random() < 0.5:
            tu = -tu
        target = frame.to_img(np.array([tu + rng.uniform(-0.1, 0.1), tv + rng.uniform(-0.1, 0.1)]))
        side = rng.choice([-1.0, 1.0])
        ang = np.radians(side * rng.uniform(amin, amax) + frame.angle_deg)
        up = np.array([np.sin(ang), -np.cos(ang)])
        palm_width = frame.d * rng.uniform(0.95, 1.25)
        center = target - up * 0.1 * palm_width
        polys, fingers = hand_polygons(center, up, palm_width, rng, mirror=bool(side > 0))
        alpha = coverage(shape, polys)

        if rng.random() < 0.6:
            skin, _ = region_stats(image, frame, (-0.9, 0.9), (0.35, 0.8))
            skin = np.clip(skin * rng.uniform(0.95, 1.1) + rng.uniform(-8, 8, size=3), 20, 255)
        else:
            skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] + rng.uniform(-10, 10, size=3)
        inside = alpha > 0.5
        dist = edge_distance(inside)
        rim = np.clip(dist / max(1.0, 0.14 * palm_width), 0.0, 1.0)
        shade = 0.7 + 0.3 * rim
        crease = np.zeros(shape, np.uint8)
        for base, tip in fingers:  # thin darker lines along the finger edges
            axis = tip - base
            axis = axis / max(np.hypot(*axis), 1e-6)
            normal = np.array([-axis[1], axis[0]]) * 0.12 * palm_width
            for sgn in (-1.0, 1.0):
                stroke_polyline(crease, np.stack([base + sgn * normal, tip + sgn * normal * 0.85]), max(1.0, palm_width * 0.03))
        shade = shade * (1.0 - 0.18 * crease.astype(np.float32) / 255.0)
        light = smooth_noise(rng, shape, 3) * 0.16 + 0.92
        texture = rng.normal(0.0, 1.2, size=shape + (1,)).astype(np.float32)
        layer = skin[None, None, :] * (shade * light)[..., None] + texture
        return np.clip(layer, 0, 255), alpha, pose


# ---------------------------------------------------------------------------------------------
# Scarf

SCARF_PATTERNS = ("plain", "stripes", "plaid", "knit")


class Scarf(Occluder):
    """A scarf pulled up over the lower face: wavy top edge between the nose and the mouth, down
    to the bottom of the image, with a fabric pattern (plain, stripes, plaid, knit) and folds."""

    name = "scarf"
    occlusion_class = "opaque"

    def __init__(self, *, patterns: Sequence[str] = SCARF_PATTERNS, top: tuple[float, float] = (0.35, 0.85), p: float = 1.0):
        super().__init__(p=p)
        bad = [x for x in patterns if x not in SCARF_PATTERNS]
        if bad or not patterns:
            raise ValueError(f"scarf.patterns: expected some of {', '.join(SCARF_PATTERNS)}, got {list(patterns)}")
        self.patterns = tuple(patterns)
        self.top = (float(top[0]), float(top[1]))

    def _apply(self, image, frame, rng):
        shape = image.shape[:2]
        v_top = rng.uniform(*self.top)
        lift = rng.uniform(0.0, 0.3)
        amp, freq, phase = rng.uniform(0.01, 0.05), rng.uniform(2, 5), rng.uniform(0, 2 * np.pi)
        us = np.linspace(-3.0, 3.0, 61)
        top = v_top - lift * np.clip(us / 1.6, -1.5, 1.5) ** 2 + amp * np.sin(freq * us + phase)
        edge = np.stack([us, top], axis=1)
        poly = np.concatenate([edge, np.array([[3.0, 8.0], [-3.0, 8.0]])])
        alpha = coverage(shape, [frame.to_img(poly)])

        u, v = frame.uv_grid(shape)
        top_at = np.interp(u, us, top).astype(np.float32)
        depth = (v - top_at) * frame.h / frame.d  # distance below the top edge, in d
        hue = rng.uniform(0, 180)
        base = _hsv_colour(hue, rng.uniform(0.2, 0.8), rng.uniform(70, 230))
        second = _hsv_colour((hue + rng.uniform(30, 150)) % 180, rng.uniform(0.2, 0.8), rng.uniform(40, 230))
        pattern = self.patterns[int(rng.integers(len(self.patterns)))]
        xs, ys = u, depth  # fabric coordinates (d units)
        if pattern == "stripes":
            period = rng.uniform(0.15, 0.4)
            band = ((ys / period + rng.uniform(0, 1)) % 1.0) < rng.uniform(0.3, 0.6)
            colour = np.where(band[..., None], second, base)
        elif pattern == "plaid":
            period = rng.uniform(0.2, 0.45)
            bx = ((xs / period) % 1.0) < 0.35
            by = ((ys / period) % 1.0) < 0.35
            mix = (bx.astype(np.float32) + by.astype(np.float32))[..., None] * 0.35
            colour = base * (1 - mix) + second * mix
        elif pattern == "knit":
            ribs = 0.85 + 0.15 * np.abs(np.sin(np.pi * xs / rng.uniform(0.05, 0.1)))
            colour = base * ribs[..., None]
        else:
            colour = np.broadcast_to(base, shape + (3,))
        folds = 1.0 + 0.12 * np.sin(2 * np.pi * (xs * rng.uniform(0.8, 2.0) + 0.4 * ys) + rng.uniform(0, 6.28))
        roll = 1.0 + 0.1 * np.exp(-(((ys - 0.08) / 0.06) ** 2)) - 0.15 * np.exp(-(((ys - 0.2) / 0.05) ** 2))
        light = 0.9 + 0.2 * smooth_noise(rng, shape, 3)
        grain = rng.normal(0.0, 4.0, size=shape + (1,)).astype(np.float32)
        layer = colour * (folds * roll * light)[..., None] + grain
        return np.clip(layer, 0, 255), alpha, pattern


def _hsv_colour(h: float, s: float, v: float) -> np.ndarray:
    hsv = np.array([[[h, s * 255, v]]], np.float32).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
