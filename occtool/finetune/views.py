"""Training views of a P x K batch: each identity's K views, a configured share of them degraded
(then restored when a restoration model is given), the others clean; random flips.

Randomness is a pure function of (seed, epoch, step, position in the global batch): a resumed
run and a run split over several processes see exactly the same views.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from occtool.models import preprocess
from occtool.training.data import ImageLoader, view_rng

_GROUP_KEY = 0xD6  # separates the per-identity draws from the per-view draws


def degraded_count(k: int, fraction: float) -> int:
    """How many of an identity's k views are degraded: round(fraction * k), but at least one
    clean and (fraction > 0) at least one degraded view."""
    if fraction <= 0:
        return 0
    return int(min(k - 1, max(1, round(fraction * k))))


class ViewMaker:
    """`batch(indices, labels, epoch=, step=, lo=, hi=)` -> dict of CPU tensors for rows [lo, hi)."""

    def __init__(self, loader: ImageLoader, *, degrader, restorer, k: int, fraction: float, flip: bool, seed: int) -> None:
        self.loader, self.degrader, self.restorer = loader, degrader, restorer
        self.k, self.fraction, self.flip, self.seed = k, fraction, flip, seed

    def degraded_positions(self, n: int, *, epoch: int, step: int) -> np.ndarray:
        """[n] bool: which positions of the global batch are degraded (per group of k views)."""
        out = np.zeros(n, dtype=bool)
        m = degraded_count(self.k, self.fraction)
        for g in range(n // self.k):
            pick = view_rng(self.seed, epoch, step, _GROUP_KEY, g).permutation(self.k)[:m]
            out[g * self.k + pick] = True
        return out

    def view(self, index: int, *, degrade: bool, epoch: int, step: int, pos: int) -> tuple[np.ndarray, np.ndarray, bool, str]:
        """(view, its clean counterpart (same flip), flipped, degradation name or "none")."""
        rng = view_rng(self.seed, epoch, step, pos)
        clean = self.loader.image(index)
        flipped = bool(self.flip and rng.random() < 0.5)
        if flipped:
            clean = np.ascontiguousarray(clean[:, ::-1])
        if not degrade:
            return clean, clean, flipped, "none"
        img, name = self.degrader(clean, rng=rng)
        return img, clean, flipped, name

    def batch(self, indices: Sequence[int], labels: np.ndarray, *, epoch: int, step: int, lo: int, hi: int) -> dict:
        degraded = self.degraded_positions(len(indices), epoch=epoch, step=step)
        views = [self.view(int(indices[j]), degrade=bool(degraded[j]), epoch=epoch, step=step, pos=j) for j in range(lo, hi)]
        images = np.stack([v[0] for v in views])
        deg = degraded[lo:hi]
        if self.restorer is not None and deg.any():
            images[deg] = self.restorer(images[deg])
        idx = np.asarray(indices[lo:hi], dtype=np.int64)
        return {
            "images": torch.from_numpy(images),  # uint8 [b, H, W, 3]
            "clean_images": torch.from_numpy(np.stack([v[1] for v in views])),
            "flipped": torch.tensor([v[2] for v in views]),
            "degraded": torch.from_numpy(deg.copy()),
            "kinds": [v[3] for v in views],
            "labels": torch.from_numpy(labels[idx]),
            "index": torch.from_numpy(idx),
            "ids": torch.arange(lo, hi),  # position in the global batch (never its own positive)
        }


class TeacherCache:
    """The frozen starting network's embedding of each training image's clean view (and mirror),
    computed on first use and kept: the distillation anchor's targets."""

    def __init__(self, teacher, *, device: torch.device) -> None:
        self.teacher, self.device = teacher, device
        self.cache: dict[tuple[int, bool], torch.Tensor] = {}

    @torch.inference_mode()
    def __call__(self, batch: dict) -> torch.Tensor:
        keys = [(int(i), bool(f)) for i, f in zip(batch["index"], batch["flipped"])]
        todo = [j for j, key in enumerate(keys) if key not in self.cache]
        if todo:
            uniq = {keys[j]: j for j in todo}
            x = preprocess(batch["clean_images"][list(uniq.values())].numpy(), self.teacher.input_spec, device=self.device)
            emb = self.teacher(x).embedding.float().cpu()
            for key, e in zip(uniq, emb):
                self.cache[key] = e
        return torch.stack([self.cache[key] for key in keys])
