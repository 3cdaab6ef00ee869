"""Labelled faces for the classifier: augment's manifest or a class tree, split by identity into
training, validation and test people (`split_samples`).

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


def split_by_people(samples: Sequence[Sample], people: set[str]) -> tuple[list[Sample], list[Sample]]:
    """(samples whose identity is not in people, samples whose identity is)."""
    outside = [s for s in samples if s.identity not in people]
    inside = [s for s in samples if s.identity in people]
    return outside, inside


def pick_people(samples: Sequence[Sample], *, count: int, seed: int) -> set[str]:
    """`count` identities of samples, drawn with a seeded generator from their sorted list (the
    same samples, count and seed always give the same people, whatever the sample order)."""
    identities = sorted({s.identity for s in samples})
    if count > len(identities):
        raise DataError(f"val_holdout_people: {count} validation people asked for, the training side has only {len(identities)}")
    picks = np.random.default_rng(seed).choice(len(identities), size=count, replace=False)
    return {identities[i] for i in picks}


@dataclass(frozen=True)
class Split:
    """Faces split by identity into three disjoint sets of people.

    pools: per data source, its faces of training-side people (everyone but the test people), in
    source order; their concatenation (`pool`) is what training and validation index into.
    Validation = the primary source's (pools[0]) faces of val_people; training = every pool face
    of the other people; test = the primary source's faces of test_people (further sources give
    training faces only, so validation and test stay the same when data is added)."""

    pools: tuple[tuple[Sample, ...], ...]
    test: tuple[Sample, ...]
    val_people: frozenset[str]
    test_people: frozenset[str]

    @property
    def pool(self) -> list[Sample]:
        return [s for part in self.pools for s in part]

    def rows(self, which: str) -> np.ndarray:
        """int64 row indices into `pool` of the "train" or "validation" faces."""
        if which not in ("train", "validation"):
            raise ValueError(f"which: 'train' or 'validation', got {which!r}")
        first = len(self.pools[0]) if self.pools else 0
        keep = [i for i, s in enumerate(self.pool)
                if (s.identity in self.val_people) == (which == "validation") and (which == "train" or i < first)]
        return np.asarray(keep, np.int64)


def split_samples(sources: Sequence[Sequence[Sample]], *, test_people: set[str], val_count: int, val_seed: int,
                  val_named: Sequence[str] = ()) -> Split:
    """Split per `Split`: test people given, validation people = `val_count` seeded picks among the
    primary source's training-side identities, plus `val_named` (never test people)."""
    if not sources:
        raise DataError("no data sources")
    clash = sorted(set(val_named) & test_people)
    if clash:
        raise DataError(f"val_people: {', '.join(clash[:3])} also test people; validation and test people must differ")
    pools = [tuple(split_by_people(src, test_people)[0]) for src in sources]
    named = set(val_named)
    free = [s for s in pools[0] if s.identity not in named]
    val_people = pick_people(free, count=val_count, seed=val_seed) | (named & {s.identity for s in pools[0]})
    test = tuple(split_by_people(sources[0], test_people)[1])
    return Split(pools=tuple(pools), test=test, val_people=frozenset(val_people), test_people=frozenset(test_people))


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
