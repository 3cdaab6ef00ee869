"""How closely two alignments of the same photo agree (e.g. ours vs a reference aligned set).

`compare_crops(ours, reference)` registers our crop onto the reference crop with an affine ECC
fit (cv2.findTransformECC) and reports
- `landmark_shift_px`: mean distance, in crop pixels, between where the 5 template points of the
  reference crop fall in our crop and the template points themselves (how differently the two
  alignments place the face; 0 = identical geometry), and
- `pixel_mad`: mean absolute difference of the two crops (0-255, RGB).

`python -m occtool.align.agreement OURS_ROOT REF_ROOT [--limit N]` compares two aligned trees
over their common files (a JSON summary on stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occtool.align.transform import transform_points
from occtool.data.landmarks import template_for_size


@dataclass
class CropAgreement:
    landmark_shift_px: float  # nan when the registration did not converge
    pixel_mad: float
    matrix: np.ndarray  # 2x3: reference crop pixel -> our crop pixel
    converged: bool


def compare_crops(ours: np.ndarray, reference: np.ndarray) -> CropAgreement:
    """ours, reference: uint8 RGB crops of the same size [h, w, 3]."""
    import cv2

    if ours.shape != reference.shape:
        raise ValueError(f"compare_crops: shapes differ {ours.shape} vs {reference.shape}")
    mad = float(np.abs(ours.astype(np.float32) - reference.astype(np.float32)).mean())
    a = cv2.cvtColor(ours, cv2.COLOR_RGB2GRAY).astype(np.float32)
    b = cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY).astype(np.float32)
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    try:
        # Finds warp with ours(warp(x)) ~ reference(x).
        _, warp = cv2.findTransformECC(b, a, warp, cv2.MOTION_AFFINE, criteria, None, 5)
        converged = True
    except cv2.error:
        converged = False
    tpl = template_for_size(ours.shape[:2])
    shift = float(np.linalg.norm(transform_points(warp, tpl) - tpl, axis=1).mean()) if converged else float("nan")
    return CropAgreement(landmark_shift_px=shift, pixel_mad=mad, matrix=warp.astype(np.float64), converged=converged)


def compare_trees(ours_root: str | Path, ref_root: str | Path, *, limit: int | None = None, seed: int = 0) -> dict:
    """Compare the common images of two aligned trees (a random sample of `limit` if given)."""
    from occtool.data.images import read_image_rgb

    ours_root, ref_root = Path(ours_root), Path(ref_root)
    common = sorted(
        p.relative_to(ours_root).as_posix()
        for p in ours_root.glob("*/*")
        if p.is_file() and (ref_root / p.relative_to(ours_root)).is_file()
    )
    if limit is not None and len(common) > limit:
        rng = np.random.default_rng(seed)
        common = sorted(rng.choice(common, size=limit, replace=False).tolist())
    shifts, mads, worst = [], [], []
    for rel in common:
        res = compare_crops(read_image_rgb(ours_root / rel), read_image_rgb(ref_root / rel))
        shifts.append(res.landmark_shift_px)
        mads.append(res.pixel_mad)
        worst.append((res.landmark_shift_px if res.converged else float("inf"), rel))
    s = np.asarray(shifts, dtype=np.float64)
    ok = np.isfinite(s)
    worst.sort(reverse=True)
    return {
        "images": len(common),
        "registered": int(ok.sum()),
        "landmark_shift_px_mean": float(s[ok].mean()) if ok.any() else None,
        "landmark_shift_px_median": float(np.median(s[ok])) if ok.any() else None,
        "landmark_shift_px_p95": float(np.percentile(s[ok], 95)) if ok.any() else None,
        "fraction_shift_over_5px": float((~ok | (s > 5)).mean()) if len(s) else None,
        "pixel_mad_mean": float(np.mean(mads)) if mads else None,
        "pixel_mad_median": float(np.median(mads)) if mads else None,
        "worst": [{"path": p, "shift_px": (None if not np.isfinite(v) else round(v, 2))} for v, p in worst[:10]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ours")
    parser.add_argument("reference")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    json.dump(compare_trees(args.ours, args.reference, limit=args.limit, seed=args.seed), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
