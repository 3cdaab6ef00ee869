"""A low-resolution copy of an identity tree: every image bicubic down to SIZE x SIZE, then
bicubic back up to its size (`occtool.finetune.low_resolution`, the same function the
fine-tune's low_res degradation uses), written losslessly as PNG with the same relative stems,
so `occtool make-protocol --probe-source OUT` takes its probes from it.

    python examples/make_lowres_tree.py SRC OUT [--size 16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from occtool.data.images import list_identity_tree, read_image_rgb
from occtool.evaluation.pairs import resolve_image_root
from occtool.finetune import low_resolution


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=16)
    a = ap.parse_args(argv)
    root = resolve_image_root(a.src)
    out = Path(a.out)
    records = list_identity_tree(root)
    for r in records:
        dst = (out / r.relpath).with_suffix(".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(low_resolution(read_image_rgb(r.path), a.size))).save(dst)
    print(f"wrote {len(records)} images ({a.size}x{a.size} and back) under {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
