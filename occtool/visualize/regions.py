"""Face regions of a visibility map and their statistics (numpy only).

Regions are bands of rows of the [H, W] map, given for the 7x7 map of a 112x112 aligned face
(0-based rows, 16 pixels each): `eyes` rows 1-2 (y 16-47: brows and the upper eye region),
`nose` row 3 (y 48-63, where the template's eye centres (y ~52) and the nose bridge sit), `lower`
rows 4-6 (y 64-111: nose tip, mouth and chin: what a medical mask covers), and `all`. Row 0
(forehead) is in `all` only. Other map heights scale the bands: rows [round(a*H/7), round(b*H/7)).
A face reads as occluded in a region when its mean visibility there is below `OCCLUDED_BELOW`.
"""

from __future__ import annotations

import numpy as np

from occtool.errors import ConfigError, ShapeError

# name -> [first row, end row) of the 7-row map
REGION_ROWS: dict[str, tuple[int, int]] = {"eyes": (1, 3), "nose": (3, 4), "lower": (4, 7), "all": (0, 7)}
REGION_NAMES = tuple(REGION_ROWS)
OCCLUDED_BELOW = 0.5


def _rows(name: str, height: int) -> slice:
    if name not in REGION_ROWS:
        raise ConfigError(f"region: unknown region {name!r}; known: {', '.join(REGION_NAMES)}")
    a, b = REGION_ROWS[name]
    return slice(int(round(a * height / 7)), max(int(round(b * height / 7)), int(round(a * height / 7)) + 1))


def as_maps(vis) -> np.ndarray:
    """[N, 1, H, W] or [N, H, W] visibility -> float64 [N, H, W]."""
    v = np.asarray(vis, dtype=np.float64)
    if v.ndim == 4 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 3:
        raise ShapeError(f"visibility maps: expected [N, 1, H, W] or [N, H, W], got {tuple(v.shape)}")
    return v


def region_visibility(vis, region: str) -> np.ndarray:
    """Mean visibility of each face over the region's rows: [N, (1,) H, W] -> [N]."""
    v = as_maps(vis)
    return v[:, _rows(region, v.shape[1]), :].mean(axis=(1, 2))


def region_error(pred, gt, region: str) -> np.ndarray:
    """Mean |pred - gt| of each face over the region's rows -> [N]."""
    p, g = as_maps(pred), as_maps(gt)
    if p.shape != g.shape:
        raise ShapeError(f"region_error: shapes differ: {p.shape} vs {g.shape}")
    rows = _rows(region, p.shape[1])
    return np.abs(p[:, rows] - g[:, rows]).mean(axis=(1, 2))


def region_summary(vis) -> dict[str, dict]:
    """Per region: mean and median of the per-face mean visibility, and the fraction of faces
    read as occluded there (mean < OCCLUDED_BELOW)."""
    out = {}
    for name in REGION_NAMES:
        r = region_visibility(vis, name)
        out[name] = {
            "mean_visibility": float(r.mean()) if r.size else None,
            "median_visibility": float(np.median(r)) if r.size else None,
            "occluded_fraction": float((r < OCCLUDED_BELOW).mean()) if r.size else None,
        }
    return out


def worst_order(pred, *, region: str, gt=None, expect: str | None = None) -> np.ndarray:
    """Indices of faces, worst first. With ground truth: the largest mean |pred - gt| over the
    region; without: `expect="occluded"` puts the most visible first (a real mask read as visible),
    `expect="visible"` the least visible first (a clean face read as occluded). Ties keep input order."""
    if gt is not None:
        key = -region_error(pred, gt, region)
    elif expect == "occluded":
        key = -region_visibility(pred, region)
    elif expect == "visible":
        key = region_visibility(pred, region)
    else:
        raise ConfigError("worst cases without ground truth need expect: occluded or visible")
    return np.argsort(key, kind="stable")
