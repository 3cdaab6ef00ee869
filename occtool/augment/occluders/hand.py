"""Opaque occluder: a hand (palm, fingers, thumb) and forearm over the mouth, nose, chin, an eye or a cheek."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from occtool.augment.base import Occluder, capsule, coverage, edge_distance, region_stats, smooth_noise, stroke_polyline, superellipse
from occtool.augment.occluders.registry import register_occluder


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


@register_occluder(default_weight=0.1)
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


__all__ = ["HAND_POSES", "Hand", "SKIN_TONES", "hand_polygons"]
