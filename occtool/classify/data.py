"""Labelled faces for the classifier: augment's manifest or a class tree, split by identity.

Sources: an `occtool augment` output folder (its manifest.jsonl: `output`, `identity`,
`occlusion_class`), a manifest file, or a class tree `DIR/<none|opaque|transparent>/<image>`
(identity = the file's stem up to the first dot, e.g. Yale's `subject01`). Images are face
crops; their classifier input is the whole-image crop (`geometry`: the template box grown by
30%, clipped, covers the whole aligned crop).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occtool.classify.geometry import INPUT_SIZE, crop_face, template_face_box
from occtool.classify.models import CLASSES
from occtool.errors import DataError


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into CLASSES
    identity: str


def _from_manifest(path: Path) -> list[Sample]:
    from occtool.augment import read_manifest

    root = path.parent
    samples = []
    for i, row in enumerate(read_manifest(path), 1):
        try:
            cls, rel, identity = row["occlusion_class"], row["output"], row["identity"]
        except KeyError as exc:
            raise DataError(f"{path}: line {i} lacks {exc} (expected occtool augment's manifest)") from None
        if cls not in CLASSES:
            raise DataError(f"{path}: line {i}: occlusion_class {cls!r} is not one of {', '.join(CLASSES)}")
        samples.append(Sample(root / rel, CLASSES.index(cls), str(identity)))
    return samples


def _from_class_tree(root: Path) -> list[Sample]:
    from occtool.data.images import _looks_like_image

    samples = []
    for label, cls in enumerate(CLASSES):
        folder = root / cls
        if folder.is_dir():
            for p in sorted(folder.rglob("*")):
                if p.is_file() and _looks_like_image(p):
                    samples.append(Sample(p, label, p.name.split(".")[0]))
    return samples


def load_samples(data: str | Path) -> list[Sample]:
    """Samples of a manifest / augment folder / class tree (see the module doc)."""
    path = Path(data)
    if not str(data):
        raise DataError("no data: give --data (an occtool augment folder, its manifest.jsonl or a class tree)")
    if not path.exists():
        raise DataError(f"data not found: {path}")
    if path.is_dir() and (path / "manifest.jsonl").is_file():
        path = path / "manifest.jsonl"
    if path.is_file():
        samples = _from_manifest(path)
    else:
        samples = _from_class_tree(path)
        if not samples:
            raise DataError(f"{path}: neither a manifest.jsonl nor class folders ({', '.join(CLASSES)}) with images")
    if not samples:
        raise DataError(f"{path}: no samples")
    return samples


def split_by_people(samples: Sequence[Sample], val_people: set[str]) -> tuple[list[Sample], list[Sample]]:
    """(training samples: identity not in val_people, validation samples: identity in it)."""
    train = [s for s in samples if s.identity not in val_people]
    val = [s for s in samples if s.identity in val_people]
    return train, val


def class_counts(samples: Sequence[Sample]) -> dict[str, int]:
    counts = np.bincount([s.label for s in samples], minlength=len(CLASSES))
    return {c: int(n) for c, n in zip(CLASSES, counts)}


def load_crop(path: Path, *, margin: float = 0.3) -> np.ndarray:
    """One face-crop image -> uint8 RGB [224, 224, 3] (whole-image rule; DataError if it does not decode)."""
    from occtool.data.images import read_image_rgb

    image = read_image_rgb(path)
    return crop_face(image, template_face_box(image.shape[:2]), margin=margin, size=INPUT_SIZE)


def load_crops(samples: Sequence[Sample], *, threads: int = 2) -> np.ndarray:
    """uint8 [B, 224, 224, 3] for samples (decoding in a few threads: PIL and cv2 release the GIL)."""
    paths = [s.path for s in samples]
    if threads <= 1:
        return np.stack([load_crop(p) for p in paths])
    with ThreadPoolExecutor(threads) as pool:
        return np.stack(list(pool.map(load_crop, paths)))
