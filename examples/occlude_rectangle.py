"""Copy an aligned identity tree with a flat rectangle over the lower face of every image.

    python examples/occlude_rectangle.py ../shared/data/lfw_aligned112/images /tmp/lfw_rect

The rectangle (DESIGN "What has been measured already") covers rows 62-111 and columns 18-93
(inclusive) of a 112x112 aligned crop, scaled for other sizes; it stands in for a mask. Output:
DST/<identity>/<stem>.png (lossless), the same relative paths as SRC, so
`occtool make-protocol SRC --probe-source DST` and `occtool eval-gallery --root-b DST` find them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from occtool.data import list_identity_tree, read_image_rgb

ROWS = (62, 111)  # inclusive, in a 112x112 crop
COLS = (18, 93)


def occlude(img: np.ndarray, value: int) -> np.ndarray:
    h, w = img.shape[:2]
    r0, r1 = int(round(ROWS[0] * h / 112)), int(round((ROWS[1] + 1) * h / 112))
    c0, c1 = int(round(COLS[0] * w / 112)), int(round((COLS[1] + 1) * w / 112))
    out = img.copy()
    out[r0:r1, c0:c1] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="identity tree SRC/<id>/<image>")
    ap.add_argument("dst", type=Path, help="output tree (created)")
    ap.add_argument("--value", type=int, default=0, help="grey level of the rectangle (default 0, black)")
    args = ap.parse_args()
    recs = list_identity_tree(args.src)
    for r in recs:
        dst = args.dst / r.relpath.parent / (r.relpath.stem + ".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(occlude(read_image_rgb(r.path), args.value)).save(dst)
    print(f"wrote {len(recs)} images under {args.dst}")


if __name__ == "__main__":
    main()
