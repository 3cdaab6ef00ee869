"""What `visualize-occlusion maps` reads: images (folders at any depth or files), and their
ground truth from a mask tree (`--masks`, mirroring the images) or an augment manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occtool.data.images import ImageRecord, list_image_files, mask_path_for
from occtool.errors import DataError


@dataclass
class MapInput:
    record: ImageRecord
    mask: Path | None = None  # full-resolution visibility PNG (255 = visible)
    occluder: str | None = None  # from the manifest


def collect_images(paths: list[Path]) -> list[ImageRecord]:
    """Folders (any depth) and single files -> records, in the order given (folders sorted);
    a file's relpath is its name."""
    if not paths:
        raise DataError("no images given: pass image files or folders")
    out: list[ImageRecord] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(list_image_files(p))
        elif p.is_file():
            out.append(ImageRecord(p, "", Path(p.name)))
        else:
            raise DataError(f"image or folder not found: {p}")
    return out


def read_manifest_rows(path: Path) -> dict[Path, dict]:
    """augment's manifest.jsonl -> {resolved output image path: row (+ "_root": the manifest's folder)}."""
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    rows = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows[(path.parent / row["output"]).resolve()] = {**row, "_root": str(path.parent)}
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"{path}:{i}: not an augment manifest row (JSON with an 'output' key)") from None
    return rows


def attach_ground_truth(records: list[ImageRecord], *, masks: Path | None = None,
                        manifests: list[Path] = ()) -> list[MapInput]:
    """Each image with its mask (the `--masks` tree at the same relative path with .png, else the
    manifest's `mask`) and occluder type (the manifest's). An image the manifest lists without a
    mask file, or a `--masks` tree lacking an image's mask, is a DataError (ground truth must be
    complete to be averaged)."""
    if masks is not None and not Path(masks).is_dir():
        raise DataError(f"--masks folder not found: {masks}")
    rows: dict[Path, dict] = {}
    for manifest in manifests:
        rows.update(read_manifest_rows(Path(manifest)))
    out = []
    for rec in records:
        row = rows.get(Path(rec.path).resolve())
        mask = None
        if masks is not None:
            mask = mask_path_for(masks, rec.relpath)
        elif row is not None and row.get("mask"):
            mask = Path(row["_root"]) / row["mask"]
        if mask is not None and not mask.is_file():
            raise DataError(f"mask not found for {rec.path}: {mask}")
        out.append(MapInput(rec, mask, (row or {}).get("occluder") if manifests else None))
    if manifests and not any(r.occluder is not None for r in out):
        raise DataError(f"--manifest {', '.join(map(str, manifests))}: none of the images is listed (its 'output' "
                        "paths are relative to the manifest's folder)")
    return out


def read_gt(mask: Path, map_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A mask PNG -> (full-resolution visibility [H, W], its area mean on the map grid [h, w]),
    the same ground truth `train` uses (`feature_mask`)."""
    from occtool.augment import feature_mask, read_visibility_png

    full = read_visibility_png(mask)
    return full, feature_mask(full, map_hw)
