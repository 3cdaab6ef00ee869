"""Gallery/probe protocols as data: built from an identity tree, written as trees + protocol.json.

The rule (DESIGN piece 6, the LFW masked-probe protocol): for every person, the first image by
file name goes to the gallery, the others are probes; optionally only the people of given folds
of a pairs file; optionally the probes are read from an occluded copy of the tree (same relative
paths under it, image suffix possibly changed by `augment`: matched by relative path stem).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from occtool.data.images import ImageRecord, list_identity_tree
from occtool.errors import DataError
from occtool.evaluation.pairs import StemIndex, disk_spellings, parse_folds, people_in_folds, read_pairs, resolve_image_root


@dataclass
class Protocol:
    gallery: list[ImageRecord]
    probes: list[ImageRecord]
    info: dict = field(default_factory=dict)


def split_first_image(records: list[ImageRecord]) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """First image by file name of each identity -> gallery; the rest -> probes."""
    by_id: dict[str, list[ImageRecord]] = {}
    for r in records:
        by_id.setdefault(r.identity, []).append(r)
    gallery: list[ImageRecord] = []
    probes: list[ImageRecord] = []
    for ident in sorted(by_id):
        recs = sorted(by_id[ident], key=lambda r: r.relpath.name)
        gallery.append(recs[0])
        probes.extend(recs[1:])
    return gallery, probes


def _people_of_folds(records, root, pairs_file, folds, folds_of: int, info: dict) -> list[ImageRecord]:
    """The records of the people in `folds` of the pairs file (all of them must be on disk)."""
    pairs = read_pairs(pairs_file, folds_of=folds_of)
    n_folds = max(p.fold for p in pairs) + 1
    fold_ids = parse_folds(folds, n_folds) if isinstance(folds, (str, type(None))) else sorted(folds)
    have = {r.identity for r in records}
    people = {next((s for s in disk_spellings(p) if s in have), p) for p in people_in_folds(pairs, fold_ids)}
    absent = sorted(people - have)
    if absent:
        raise DataError(f"{len(absent)} people of the pairs file are not folders under {root} "
                        f"(first: {', '.join(absent[:5])})")
    info.update(pairs_file=str(Path(pairs_file).resolve()), folds=None if fold_ids is None else [k + 1 for k in fold_ids],
                people_in_folds=len(people))
    return [r for r in records if r.identity in people]


def _from_probe_source(probes, probe_source, allow_missing: bool, info: dict) -> list[ImageRecord]:
    """Each probe `<id>/<stem>.*` taken from the occluded copy `probe_source` instead."""
    probe_root = resolve_image_root(probe_source)
    index = StemIndex(probe_root)
    moved: list[ImageRecord] = []
    missing: list[str] = []
    for r in probes:
        rel_stem = str(r.relpath.with_suffix("")) if r.relpath.suffix else str(r.relpath)
        hit = index.find(rel_stem) or index.find(str(r.relpath))
        if hit is None:
            missing.append(str(r.relpath))
            continue
        moved.append(ImageRecord(hit, r.identity, hit.relative_to(probe_root)))
    if missing and not allow_missing:
        raise DataError(f"{len(missing)} of {len(probes)} probes have no counterpart under {probe_root} "
                        f"(first: {', '.join(missing[:3])}); pass --allow-missing to drop them")
    info["probe_source"] = str(probe_root.resolve())
    info["probes_missing_in_source"] = len(missing)
    return moved


def build_protocol(
    src: str | Path,
    *,
    pairs_file: str | Path | None = None,
    folds: str | list[int] | None = None,
    probe_source: str | Path | None = None,
    allow_missing: bool = False,
    folds_of: int = 10,
) -> Protocol:
    """Gallery/probe split of the identity tree `src` (or `src/images`).

    folds: '6-10' style text (1-based) or a list of 0-based fold ids; needs pairs_file.
    folds_of: the folds of a plain-list pairs file (no header; see read_pairs).
    probe_source: an occluded copy; each probe `<id>/<stem>.*` is taken from there. A probe
    missing from it is a DataError unless allow_missing (then it is dropped and counted).
    """
    root = resolve_image_root(src)
    records = list_identity_tree(root)
    info: dict = {"source": str(Path(src).resolve()), "image_root": str(root.resolve())}
    if folds is not None and pairs_file is None:
        raise DataError("--folds needs --pairs (the folds are those of a pairs file)")
    if pairs_file is not None:
        records = _people_of_folds(records, root, pairs_file, folds, folds_of, info)
    gallery, probes = split_first_image(records)
    info["probe_source"] = None
    if probe_source is not None:
        probes = _from_probe_source(probes, probe_source, allow_missing, info)
    if not gallery:
        raise DataError(f"the protocol has an empty gallery (source {root})")
    info.update(
        gallery_identities=len({r.identity for r in gallery}),
        gallery_images=len(gallery),
        probe_images=len(probes),
        probe_identities=len({r.identity for r in probes}),
    )
    return Protocol(gallery=gallery, probes=probes, info=info)


def write_protocol_trees(protocol: Protocol, out: str | Path, *, copy: bool = False) -> dict:
    """Write out/gallery/<rel> and out/probes/<rel> (absolute symlinks, or copies) + protocol.json.

    Returns the protocol.json content.
    """
    from occtool.io import atomic_write_json

    out = Path(out)
    listing = {}
    for part, recs in (("gallery", protocol.gallery), ("probes", protocol.probes)):
        base = out / part
        base.mkdir(parents=True, exist_ok=True)
        rels = []
        for r in recs:
            dst = base / r.relpath
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            src = Path(r.path).resolve()
            if copy:
                shutil.copy2(src, dst)
            else:
                os.symlink(src, dst)
            rels.append(str(r.relpath))
        listing[part] = rels
    doc = {
        "format": "occtool-protocol",
        "format_version": 1,
        "rule": "first image by file name of each identity -> gallery; the others -> probes",
        "links": "copies" if copy else "symlinks",
        **protocol.info,
        **listing,
    }
    atomic_write_json(out / "protocol.json", doc)
    return doc
