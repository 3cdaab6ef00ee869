"""Gallery/probe identification from image trees: extraction, honesty checks, the engine, report rows."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from occtool.errors import DataError
from occtool.evaluation.engine import (
    AUTO_SHORTLIST_GALLERY, AUTO_SHORTLIST_K, StageProgress, extraction_needs, identification_blocks, identity_index,
    score_identification, stage,
)
from occtool.evaluation.extract import Features, extract_features
from occtool.evaluation.leakage import check_content_leakage, check_pixel_leakage, overlap_report
from occtool.evaluation.methods import IdentContext, resolve_methods
from occtool.evaluation.metrics import DEFAULT_FARS

UNTRAINED_QACONV_NOTE = "qaconv here is the untrained, parameter-free matcher (no learned QAConv head): expect it to be weak"


def extract_side(records, em, *, methods, flip, batch_size, device, cache_dir, progress, name, maps_file=None) -> Features:
    """Features of one side (gallery, probes, pair images) for the given methods."""
    with stage(progress, name) as cb:
        return extract_features(
            records, model=em.model.to(device), device=device, batch_size=batch_size, flip=flip, cache_dir=cache_dir,
            progress=cb, model_key=em.cache_key(flip) if cache_dir else None, maps_file=maps_file,
            runtime=em.runtime, threads=em.threads,
            **extraction_needs(methods),
        )


def check_bad(feats: list[Features], max_bad: int) -> dict:
    n_bad = sum(f.n_bad for f in feats)
    errors = [e for f in feats for e in f.errors]
    if n_bad > max_bad:
        raise DataError(f"{n_bad} image(s) failed to load (limit --max-bad {max_bad}); first: {errors[0] if errors else '?'}")
    return {"bad_images": n_bad, "bad_examples": errors[:10]}


def evaluate_gallery(gallery_records, probe_records, *, em, methods=None, flip: bool = True, threshold=None,
                     max_bad: int = 0, batch_size: int = 64, device="cpu", cache_dir=None, shortlist_k=None,
                     fars=DEFAULT_FARS, max_impostors: int = 50_000_000, progress: StageProgress = None) -> dict:
    """Identification (rank-1/5, CMC) and verification (ROC, AUC, EER, TAR@FAR) of probes against
    gallery identities, for every method."""
    if not gallery_records:
        raise DataError("the gallery is empty: no images to enrol")
    if not probe_records:
        raise DataError("there are no probe images")
    scoring = em.scoring(flip=flip)
    methods = resolve_methods(methods, scoring)
    device = torch.device(device)
    big = AUTO_SHORTLIST_GALLERY  # feature maps of a large side go to a memory-mapped file: RAM stays bounded
    with tempfile.TemporaryDirectory(prefix="occtool_eval_") as tmp:
        sides = []
        for name, recs in (("gallery", gallery_records), ("probes", probe_records)):
            sides.append(extract_side(recs, em, methods=methods, flip=flip, batch_size=batch_size, device=device,
                                      cache_dir=cache_dir, progress=progress, name=name,
                                      maps_file=Path(tmp) / f"{name}_maps.npy" if len(recs) > big else None))
        gf, pf = sides
        bad = check_bad([gf, pf], max_bad)
        check_content_leakage(gf.hashes, pf.hashes, gf.paths, pf.paths)
        check_pixel_leakage(gf.paths, pf.paths)
        ctx, names, overlap = _context(gallery_records, probe_records, gf, pf, scoring, device)
        if shortlist_k is None:
            shortlist_k = AUTO_SHORTLIST_K if ctx.g_rows.size > big else 0
        results, methods, notes = score_identification(ctx, methods, shortlist_k=shortlist_k,
                                                       max_impostors=max_impostors, progress=progress)
    per_method, curves, more = identification_blocks(results, n_ids=ctx.n_ids, fars=fars, threshold=threshold)
    notes += more
    if not em.matcher_trained and any(m.startswith("qaconv") for m in methods):
        notes.append(UNTRAINED_QACONV_NOTE)
    metrics = {
        "mode": "identification",
        "methods": per_method,
        "counts": _counts(ctx, gallery_records, probe_records, gf, pf, bad),
        "overlap": overlap.as_dict(),
        "model": em.info,
        "flip": bool(flip),
        "shortlist_k": int(shortlist_k),
        "ties": "pessimistic: a gallery identity scoring equal to the true one ranks ahead of it",
        "notes": notes,
    }
    return {"metrics": metrics, "curves": curves, "rows": _rows(results, ctx, probe_records, names)}


def _context(gallery_records, probe_records, gf: Features, pf: Features, scoring, device):
    g_ok, p_ok = np.nonzero(gf.ok_mask)[0], np.nonzero(pf.ok_mask)[0]
    if g_ok.size == 0:
        raise DataError("the gallery is empty: every gallery image failed to load")
    if p_ok.size == 0:
        raise DataError("every probe image failed to load")
    g_names = [gallery_records[i].identity for i in g_ok]
    p_names = [probe_records[i].identity for i in p_ok]
    overlap = overlap_report(g_names, p_names, [gf.hashes[i] for i in g_ok], [pf.hashes[i] for i in p_ok])
    names, g_labels, true_ids = identity_index(g_names, p_names)
    if not (true_ids >= 0).any():
        raise DataError("no probe identity is in the gallery: nothing can be identified")
    ctx = IdentContext(probes=pf, gallery=gf, p_rows=p_ok, g_rows=g_ok, g_labels=g_labels, true_ids=true_ids,
                       n_ids=len(names), scoring=scoring, device=device)
    return ctx, names, overlap


def _counts(ctx: IdentContext, gallery_records, probe_records, gf: Features, pf: Features, bad: dict) -> dict:
    n_known = int((ctx.true_ids >= 0).sum())
    return {
        "gallery_images": int(len(gallery_records)),
        "gallery_images_used": int(ctx.g_rows.size),
        "gallery_identities": ctx.n_ids,
        "probe_images": int(len(probe_records)),
        "probe_images_used": int(ctx.p_rows.size),
        "probes_with_gallery_identity": n_known,
        "probes_without_gallery_identity": int(ctx.p_rows.size - n_known),
        **bad,
        "images_resized": gf.n_resized + pf.n_resized,
        "cache_hits": gf.cache_hits + pf.cache_hits,
    }


def _rows(results: dict, ctx: IdentContext, probe_records, names: list[str]) -> list[dict]:
    """scores.csv: one row per (method, probe): rank, genuine score, top-5 identities."""
    rows = []
    for m, r in results.items():
        for j, pi in enumerate(ctx.p_rows):
            t = int(ctx.true_ids[j])
            tops = [names[i] for i in r.top_ids[j, :5]]
            rows.append({
                "method": m,
                "probe": str(probe_records[pi].relpath),
                "identity": probe_records[pi].identity,
                "in_gallery": t >= 0,
                "rank": int(r.rank_all[j]) if t >= 0 else "",
                "genuine_score": f"{r.genuine_all[j]:.6f}" if t >= 0 else "",
                "top1_identity": tops[0],
                "top1_score": f"{r.top_scores[j, 0]:.6f}",
                "top5": "|".join(tops),
            })
    return rows
