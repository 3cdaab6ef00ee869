"""`OccludedFaceDataset`: occluded faces with ground-truth visibility, on the fly, for training."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from occtool.augment.base import clean_result, feature_mask, read_visibility_png
from occtool.data.images import ImageRecord, mask_path_for, read_image_rgb
from occtool.errors import ShapeError


def sample_seed_sequence(seed: int, epoch: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(epoch), int(index)])


class OccludedFaceDataset(torch.utils.data.Dataset):
    """A torch Dataset over `ImageRecord`s returning, per index, a dict:

    - image: uint8 RGB numpy [H, W, 3] (the default collate makes it a uint8 tensor [B, H, W, 3];
      `occtool.models.preprocess` takes that layout as numpy, or permute it to [B, 3, H, W])
    - visibility: float32 [H, W] in [0, 1] (1 visible); feature_mask: float32 [h, w] (`mask_size`,
      the exact area mean of visibility)
    - has_mask: bool, whether visibility is real ground truth (see below); label: int (identity
      index); path: str; occluder, occlusion_class: str

    Where the ground truth comes from, in order:
    1. `mask_root` given and `mask_root/<relpath>.png` exists (an `occtool augment` output, e.g.
       records of `DST/images` with `mask_root=DST/masks`): the image as stored, its mask (and
       occluder / class from `DST/manifest.jsonl` when present; else "mask_file" / "unknown").
    2. `synthesizer` given: occluded on the fly with `np.random.default_rng(SeedSequence([seed,
       epoch, index]))`, so a sample is the same for a given (seed, epoch, index) whatever the
       worker. A clean draw (occluder "none") has has_mask = `clean_has_mask`.
    3. Otherwise the image unchanged, visibility all 1 and has_mask False (a placeholder: losses
       must ignore it).

    Call `set_epoch(e)` before iterating an epoch. With DataLoader workers, the dataset is copied
    into the workers when the iterator starts, so use persistent_workers=False (the default) or
    the new epoch will not reach them.
    labels: {identity: int}; default: the sorted identities of `records` numbered from 0.
    landmarks: {relpath (posix): [5, 2]} for the occluders; default: the canonical template.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        *,
        synthesizer=None,
        seed: int = 0,
        mask_root: str | Path | None = None,
        labels: Mapping[str, int] | None = None,
        landmarks: Mapping[str, np.ndarray] | None = None,
        mask_size: tuple[int, int] = (7, 7),
        clean_has_mask: bool = True,
    ):
        self.records = list(records)
        self.synthesizer = synthesizer
        self.seed = int(seed)
        self.mask_root = Path(mask_root) if mask_root is not None else None
        if labels is None:
            labels = {ident: i for i, ident in enumerate(sorted({r.identity for r in self.records}))}
        missing = sorted({r.identity for r in self.records} - set(labels))
        if missing:
            raise KeyError(f"labels has no entry for identities {missing[:5]}")
        self.labels = dict(labels)
        self.landmarks = landmarks
        self.mask_size = (int(mask_size[0]), int(mask_size[1]))
        self.clean_has_mask = bool(clean_has_mask)
        self.epoch = 0
        self._manifest: dict[str, tuple[str, str]] = {}
        if self.mask_root is not None and (self.mask_root.parent / "manifest.jsonl").is_file():
            from occtool.augment.batch import read_manifest

            base = self.mask_root.parent
            for row in read_manifest(base / "manifest.jsonl"):
                if "mask" in row:
                    key = str((base / row["mask"]).resolve())
                    self._manifest[key] = (row.get("occluder", "unknown"), row.get("occlusion_class", "unknown"))

    @property
    def num_classes(self) -> int:
        return len(set(self.labels.values()))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def rng_for(self, index: int) -> np.random.Generator:
        return np.random.default_rng(sample_seed_sequence(self.seed, self.epoch, index))

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self.records)
        rec = self.records[index]
        image = read_image_rgb(rec.path)
        relpath = Path(rec.relpath).as_posix()
        result = None
        has_mask = False
        if self.mask_root is not None:
            mpath = mask_path_for(self.mask_root, rec.relpath)
            if mpath.is_file():
                vis = read_visibility_png(mpath)
                if vis.shape != image.shape[:2]:
                    raise ShapeError(f"mask {mpath}: expected {image.shape[:2]} like its image, got {vis.shape}")
                result = clean_result(image)
                result.visibility = vis
                occluded = bool((vis < 1.0).any())
                default = ("mask_file", "unknown") if occluded else ("none", "none")
                result.occluder, result.occlusion_class = self._manifest.get(str(mpath.resolve()), default)
                has_mask = True
        if result is None and self.synthesizer is not None:
            lm = self.landmarks.get(relpath) if self.landmarks is not None else None
            result = self.synthesizer(image, landmarks=lm, rng=self.rng_for(index))
            has_mask = result.occlusion_class != "none" or self.clean_has_mask
        if result is None:
            result = clean_result(image)
        return {
            "image": result.image,
            "visibility": result.visibility,
            "feature_mask": feature_mask(result.visibility, self.mask_size),
            "has_mask": has_mask,
            "label": int(self.labels[rec.identity]),
            "path": str(rec.path),
            "occluder": result.occluder,
            "occlusion_class": result.occlusion_class,
        }
