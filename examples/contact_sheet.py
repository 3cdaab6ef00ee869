"""Contact sheet of every occluder on real aligned LFW faces: occluded image + its visibility mask.

    python examples/contact_sheet.py --out /tmp/occluders.png
    python examples/contact_sheet.py --out sheet.png --images ../shared/data/lfw_aligned112/images \
        --landmarks aligned/landmarks.csv --examples 3 --scale 2

One panel per occluder (each medical-mask type separately), `--examples` faces each: the
occluded face, then its mask (white = visible, black = occluded, grey = partly visible), with
the occluder's detail (template, pattern, ...) under it. With `--landmarks` (occtool align's
landmarks CSV for the `--images` tree) the occluders use those points, and an extra panel shows
turned faces, where the `_left` / `_right` mask templates are chosen.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from occtool.augment import MASK_TYPES, OCCLUDER_NAMES, FaceFrame, build_occluder
from occtool.augment.config import SynthesisConfig
from occtool.data import list_identity_tree, read_image_rgb, read_landmarks
from occtool.resources import shared_path


def _label(tile: np.ndarray, text: str, scale: float) -> None:
    cv2.putText(tile, text, (3, tile.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.36 * scale, (20, 20, 20), 1, cv2.LINE_AA)


def panel(title: str, examples: list[tuple[np.ndarray, np.ndarray, str]], scale: float) -> np.ndarray:
    """title bar + one (image | mask) pair per example with its detail under it."""
    cell = int(round(112 * scale))
    text_h = int(round(16 * scale))
    gap = 4
    pairs = []
    for image, vis, detail in examples:
        img = cv2.resize(image, (cell, cell), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        m = (np.clip(vis, 0, 1) * 255).astype(np.uint8)
        m = cv2.resize(m, (cell, cell), interpolation=cv2.INTER_NEAREST)
        pair = np.full((cell + text_h, 2 * cell + 2, 3), 255, np.uint8)
        pair[:cell, :cell] = img
        pair[:cell, cell + 2 :] = m[..., None]
        _label(pair, detail[:32], scale)
        pairs.append(pair)
        pairs.append(np.full((cell + text_h, gap, 3), 255, np.uint8))
    body = np.hstack(pairs[:-1])
    head = np.full((text_h + 4, body.shape[1], 3), 235, np.uint8)
    cv2.putText(head, title, (3, text_h - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([head, body])


def build_sheet(images_root: Path, *, landmarks: dict | None, examples: int, seed: int, scale: float, columns: int) -> np.ndarray:
    records = list_identity_tree(images_root)
    rng = np.random.default_rng(seed)
    if landmarks is not None:
        records = [r for r in records if r.relpath.as_posix() in landmarks]
    picks = [records[i] for i in rng.choice(len(records), size=min(len(records), 200), replace=False)]

    def faces(k: int, offset: int):
        for j in range(k):
            rec = picks[(offset * examples + j) % len(picks)]
            lm = landmarks.get(rec.relpath.as_posix()) if landmarks is not None else None
            yield rec, read_image_rgb(rec.path), lm

    entries: list[tuple[str, object]] = []
    cfg = SynthesisConfig()
    for t in MASK_TYPES:
        cfg.medical_mask.types = [t]
        entries.append((f"medical_mask: {t}", build_occluder("medical_mask", cfg)))
    for name in OCCLUDER_NAMES:
        if name != "medical_mask":
            entries.append((name, build_occluder(name)))

    panels = []
    for i, (title, occ) in enumerate(entries):
        ex = []
        for j, (rec, image, lm) in enumerate(faces(examples, i)):
            res = occ(image, landmarks=lm, rng=np.random.default_rng([seed, i, j]))
            ex.append((res.image, res.visibility, f"{res.occlusion_class}: {res.detail}"))
        panels.append(panel(title, ex, scale))

    if landmarks is not None:  # turned faces: pick the most turned ones each way
        turned = sorted(records, key=lambda r: FaceFrame(landmarks[r.relpath.as_posix()]).nose_offset)
        chosen = turned[: (examples + 1) // 2] + turned[-(examples // 2) :] if examples > 1 else turned[:1]
        occ = build_occluder("medical_mask")
        ex = []
        for j, rec in enumerate(chosen):
            lm = landmarks[rec.relpath.as_posix()]
            res = occ(read_image_rgb(rec.path), landmarks=lm, rng=np.random.default_rng([seed, 99, j]))
            ex.append((res.image, res.visibility, f"{res.detail} o={FaceFrame(lm).nose_offset:+.2f}"))
        panels.append(panel("medical_mask: turned faces (_left/_right templates)", ex, scale))

    width = max(p.shape[1] for p in panels)
    rows = []
    for i in range(0, len(panels), columns):
        group = panels[i : i + columns]
        height = max(p.shape[0] for p in group)
        padded = [np.pad(p, ((0, height - p.shape[0]), (0, width - p.shape[1] + 8), (0, 0)), constant_values=255) for p in group]
        while len(padded) < columns:
            padded.append(np.full((height, width + 8, 3), 255, np.uint8))
        rows.append(np.hstack(padded))
        rows.append(np.full((8, rows[-1].shape[1], 3), 255, np.uint8))
    return np.vstack(rows[:-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="PNG to write")
    ap.add_argument("--images", type=Path, default=None, help="aligned identity tree (default: shared lfw_aligned112/images)")
    ap.add_argument("--landmarks", type=Path, default=None, help="landmarks CSV for --images (occtool align output)")
    ap.add_argument("--examples", type=int, default=3, help="faces per occluder")
    ap.add_argument("--columns", type=int, default=2, help="panels per row")
    ap.add_argument("--scale", type=float, default=1.5, help="size of a face tile in units of 112 px")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    images = args.images or shared_path("data", "lfw_aligned112", "images")
    landmarks = read_landmarks(args.landmarks) if args.landmarks else None
    sheet = build_sheet(images, landmarks=landmarks, examples=args.examples, seed=args.seed, scale=args.scale, columns=args.columns)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
