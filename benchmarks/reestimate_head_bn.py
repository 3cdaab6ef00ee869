"""Issue 12 diagnostic: re-estimate a checkpoint's occlusion-head BatchNorm statistics exactly
over the training feature cache (what `schedule.occlusion_head_epochs` does at the head's freeze),
so that the real-set maps of a checkpoint can be read without the noise of the running average
of its last ~10 training batches.

    python benchmarks/reestimate_head_bn.py CHECKPOINT OUT.pt CACHE_DIR [--views 20000]

CACHE_DIR: the run's `<data.cache_dir>/features-<key>` folder (fm.npy [N, V, C, H, W]). The weights
are untouched; only head.bn.running_mean / running_var change. Then e.g.
`benchmarks/occlusion_maps_real.sh OUT.pt MAPS`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from occtool.io import atomic_save
from occtool.models import load_model_checkpoint
from occtool.training.head_schedule import reestimate_batchnorm, sample_cached_views


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("cache_dir", type=Path)
    ap.add_argument("--views", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    raw = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    head = load_model_checkpoint(args.checkpoint).model.head.eval()
    fm = np.load(args.cache_dir / "fm.npy", mmap_mode="r")  # [N, V, C, H, W] float16
    img, view = sample_cached_views(fm.shape[0], fm.shape[1], count=args.views, seed=args.seed)
    before = head.bn.running_mean.clone()
    batches = (torch.from_numpy(fm[img[s: s + 512], view[s: s + 512]].astype(np.float32))
               for s in range(0, args.views, 512))
    reestimate_batchnorm(head.conv1, head.bn, batches)
    sd = raw["model"]["state_dict"]
    sd["head.bn.running_mean"], sd["head.bn.running_var"] = head.bn.running_mean.clone(), head.bn.running_var.clone()
    atomic_save(args.out, lambda p: torch.save(raw, p))
    change = float((head.bn.running_mean - before).norm() / before.norm())
    print(f"{args.out}: head BatchNorm re-estimated over {args.views} cached views (running mean moved {change:.4f})")


if __name__ == "__main__":
    main()
