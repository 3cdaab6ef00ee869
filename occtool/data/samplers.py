"""PK batch sampling: each batch holds P identities x K images (for the pairwise losses).

Batches are a pure function of (seed, epoch): an epoch visits every eligible identity once in a
seeded random order (P per batch, the last incomplete group dropped), and takes K of its images
(without replacement while it has enough, else cycling through a shuffled list, so an identity
with one image gives K copies, which the augmentation turns into different views). Under DDP
every process computes the same global batch and keeps its contiguous slice
`[rank * B / W, (rank + 1) * B / W)`, so W processes see exactly the samples one process would.
The position inside the epoch is part of `state_dict()`, so a resumed run continues with the
very next batch.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np

from occtool.errors import DataError


class PKBatchSampler:
    """Yields lists of dataset indices (this rank's slice of each global P*K batch)."""

    def __init__(
        self,
        labels: Sequence[int],
        *,
        p: int,
        k: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        min_images: int = 1,
        batches_per_epoch: int | None = None,
    ) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"PKBatchSampler: P and K must be >= 1, got P={p}, K={k}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"PKBatchSampler: bad rank {rank} / world_size {world_size}")
        if (p * k) % world_size:
            raise ValueError(f"PKBatchSampler: global batch P*K={p * k} must be divisible by the {world_size} processes")
        by_id: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            by_id[int(label)].append(index)
        self.identities = sorted(i for i, idx in by_id.items() if len(idx) >= min_images)
        self.by_id = {i: by_id[i] for i in self.identities}
        if len(self.identities) < p:
            raise DataError(
                f"PK sampling needs at least P={p} identities with >= {min_images} image(s); found {len(self.identities)}"
            )
        self.p, self.k, self.seed = p, k, seed
        self.rank, self.world_size = rank, world_size
        self.min_images = min_images
        self._full_batches = len(self.identities) // p
        self.batches_per_epoch = batches_per_epoch or self._full_batches
        self.epoch = 0
        self.position = 0  # batches of the current epoch already handed out

    @property
    def global_batch_size(self) -> int:
        return self.p * self.k

    @property
    def local_batch_size(self) -> int:
        return self.p * self.k // self.world_size

    def __len__(self) -> int:
        return self.batches_per_epoch

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All global batches of an epoch (deterministic in seed and epoch)."""
        rng = np.random.default_rng([self.seed, epoch, 0x9C])
        batches: list[list[int]] = []
        order: list[int] = []
        while len(batches) < self.batches_per_epoch:
            if len(order) < self.p:  # (re)shuffle identities; more batches than one pass allows
                order = order + [self.identities[i] for i in rng.permutation(len(self.identities))]
            group, order = order[: self.p], order[self.p:]
            batch: list[int] = []
            for ident in group:
                imgs = self.by_id[ident]
                picks = rng.permutation(len(imgs))
                while len(picks) < self.k:
                    picks = np.concatenate([picks, rng.permutation(len(imgs))])
                batch.extend(imgs[j] for j in picks[: self.k])
            batches.append(batch)
        return batches

    @property
    def local_slice(self) -> tuple[int, int]:
        """[lo, hi) of this rank inside every global batch."""
        return self.rank * self.local_batch_size, (self.rank + 1) * self.local_batch_size

    def iter_global(self) -> Iterator[list[int]]:
        """The remaining global batches of the current epoch (every rank sees the same)."""
        batches = self.global_batches(self.epoch)
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield batch
        self.epoch += 1
        self.position = 0

    def __iter__(self) -> Iterator[list[int]]:
        lo, hi = self.local_slice
        for batch in self.iter_global():
            yield batch[lo:hi]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.seed = int(state.get("seed", self.seed))
