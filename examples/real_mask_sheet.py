"""Rows of the same aligned LFW faces: medical_mask (the protocol's masks), real_mask, and
real_mask + image degradations (issue 12), the settings `configs/lfw_real_masks.yaml` trains with.

    python examples/real_mask_sheet.py --out docs/real_occlusions.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from occtool.augment import DegradeConfig, OccluderWeights, OcclusionSynthesizer, SynthesisConfig
from occtool.data import list_identity_tree, read_image_rgb
from occtool.resources import shared_path

ROWS = (("medical_mask", 0.0), ("real_mask", 0.0), ("real_mask", 0.5))


def synthesizer(name: str, degrade: float) -> OcclusionSynthesizer:
    weights = OccluderWeights(**{n: (1.0 if n == name else 0.0) for n in OccluderWeights().as_dict()})
    return OcclusionSynthesizer(config=SynthesisConfig(weights=weights, keep_clean=0.0, degrade=DegradeConfig(p=degrade)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--images", type=Path, default=shared_path("data", "lfw_aligned112", "images"))
    ap.add_argument("--faces", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    records = list_identity_tree(args.images)
    pick = np.random.default_rng(args.seed).choice(len(records), size=args.faces, replace=False)
    faces = [read_image_rgb(records[i].path) for i in sorted(pick)]
    rows = []
    for name, degrade in ROWS:
        synth = synthesizer(name, degrade)
        tiles = [synth(face, rng=np.random.default_rng(args.seed + j)).image for j, face in enumerate(faces)]
        label = np.full((112, 112, 3), 255, np.uint8)
        for k, text in enumerate([name, f"degrade {degrade}" if degrade else ""]):
            cv2.putText(label, text, (4, 50 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (20, 20, 20), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label] + tiles, axis=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.concatenate(rows, axis=0)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
