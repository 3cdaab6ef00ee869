"""Honesty checks on a gallery/probe split before anything is scored.

- The same image content on both sides is leakage: an error, whatever the file names or
  identities say. Checked twice: sha1 of the file bytes, and sha1 of the decoded pixels (a copy
  re-encoded losslessly, e.g. PNG recompressed or converted from JPEG, has other bytes).
- Probe identities absent from the gallery are counted and listed (they cannot be identified;
  in verification all their scores are impostors).
- A subject-overlap summary says how the two sides' identities relate.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from occtool.errors import DataError


class LeakageError(DataError):
    """The same image (by content hash) is in the gallery and among the probes."""


@dataclass
class OverlapReport:
    gallery_identities: int
    probe_identities: int
    shared_identities: int
    probe_identities_missing: list[str] = field(default_factory=list)
    probes_of_missing_identities: int = 0
    gallery_only_identities: int = 0
    duplicate_images_within_gallery: int = 0
    duplicate_images_within_probes: int = 0

    def as_dict(self) -> dict:
        return {
            "gallery_identities": self.gallery_identities,
            "probe_identities": self.probe_identities,
            "shared_identities": self.shared_identities,
            "probe_identities_missing_from_gallery": len(self.probe_identities_missing),
            "probe_identities_missing_examples": self.probe_identities_missing[:20],
            "probes_of_missing_identities": self.probes_of_missing_identities,
            "gallery_only_identities": self.gallery_only_identities,
            "duplicate_images_within_gallery": self.duplicate_images_within_gallery,
            "duplicate_images_within_probes": self.duplicate_images_within_probes,
        }


def pixel_sha1(path) -> str | None:
    """sha1 of the decoded RGB pixels and their shape; None when the image does not decode."""
    from occtool.data.images import read_image_rgb

    try:
        img = read_image_rgb(path)
    except DataError:
        return None
    return hashlib.sha1(np.asarray(img.shape, np.int64).tobytes() + img.tobytes()).hexdigest()


def pixel_hashes(paths, *, threads: int = 4) -> list[str | None]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(pixel_sha1, paths))


def check_pixel_leakage(gallery_paths, probe_paths) -> None:
    """LeakageError when a probe has the same decoded pixels as a gallery image (re-encoded copy)."""
    check_content_leakage(pixel_hashes(gallery_paths), pixel_hashes(probe_paths), gallery_paths, probe_paths,
                          same="have the same pixels as gallery images (re-encoded copies)")


def check_content_leakage(gallery_hashes, probe_hashes, gallery_paths=None, probe_paths=None, *,
                          same: str = "are byte-identical to gallery images") -> None:
    """LeakageError naming up to 3 examples when any probe's hash equals a gallery image's."""
    g = {}
    for i, h in enumerate(gallery_hashes):
        if h is not None:
            g.setdefault(h, i)
    clashes = [(g[h], j) for j, h in enumerate(probe_hashes) if h is not None and h in g]
    if clashes:
        ex = []
        for gi, pj in clashes[:3]:
            gp = gallery_paths[gi] if gallery_paths is not None else f"gallery #{gi}"
            pp = probe_paths[pj] if probe_paths is not None else f"probe #{pj}"
            ex.append(f"{pp} == {gp}")
        raise LeakageError(
            f"leakage: {len(clashes)} probe image(s) {same} "
            f"(e.g. {'; '.join(ex)}); remove them from one side"
        )


def overlap_report(gallery_ids, probe_ids, gallery_hashes=None, probe_hashes=None) -> OverlapReport:
    """Subject overlap between the two sides (lists of per-image identity names)."""
    gset = set(gallery_ids)
    pcount = Counter(probe_ids)
    missing = sorted(set(pcount) - gset)
    rep = OverlapReport(
        gallery_identities=len(gset),
        probe_identities=len(pcount),
        shared_identities=len(gset & set(pcount)),
        probe_identities_missing=missing,
        probes_of_missing_identities=sum(pcount[m] for m in missing),
        gallery_only_identities=len(gset - set(pcount)),
    )
    if gallery_hashes is not None:
        hs = [h for h in gallery_hashes if h is not None]
        rep.duplicate_images_within_gallery = len(hs) - len(set(hs))
    if probe_hashes is not None:
        hs = [h for h in probe_hashes if h is not None]
        rep.duplicate_images_within_probes = len(hs) - len(set(hs))
    return rep
