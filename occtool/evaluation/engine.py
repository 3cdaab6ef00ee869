"""The evaluation engine: features -> scores per method -> metrics and report rows.

Every command that measures goes through here: `occtool eval-gallery` (`evaluate_gallery`,
`evaluate_pairs`: image files on disk), training validation and the training test, and
fine-tuning validation (`identify_features`: features already in memory). No printing: results
are dicts {"metrics": JSON-able, "curves": per-method arrays, "rows": scores.csv rows}.

Methods are the registered ones (`occtool.evaluation.methods`); a gallery identity's template is
the re-normalised mean embedding of its images (per-image methods: the best image).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import numpy as np
import torch

from occtool.errors import DataError
from occtool.evaluation import metrics as M
from occtool.evaluation.methods import IdentContext, create_method
from occtool.evaluation.scoring import identify, identify_shortlist

StageProgress = Callable[[str], object] | None  # stage name -> context manager yielding ProgressFn
AUTO_SHORTLIST_GALLERY = 10_000  # gallery images above which per-image methods re-rank a cosine shortlist
AUTO_SHORTLIST_K = 100


def stage(progress: StageProgress, name: str):
    return progress(name) if progress is not None else nullcontext(None)


def extraction_needs(methods) -> dict[str, bool]:
    """The `extract_features` switches the methods need."""
    needs = {f for m in methods for f in create_method(m).needs}
    return {"with_maps": "match_maps" in needs, "with_contributions": "contributions" in needs}


def _component_names(methods, scoring) -> set[str]:
    out: set[str] = set()
    for m in methods:
        method = create_method(m)
        if hasattr(method, "components"):
            out.update(method.components(methods, scoring))
    return out


def score_identification(ctx: IdentContext, methods, *, shortlist_k: int = 0, max_impostors: int = 50_000_000,
                         progress: StageProgress = None) -> tuple[dict, list[str], list[str]]:
    """Every method on one probe/gallery split -> ({method: IdentResult}, methods scored, notes).

    With `shortlist_k` > 0, per-image methods re-rank the cosine top-k of each probe, and composite
    methods (fused) are skipped (they need full matrices)."""
    ctx.requested = tuple(methods)
    keep = _component_names(methods, ctx.scoring) if shortlist_k == 0 else set()
    cosine = create_method("cosine").identity_scorer(ctx) if shortlist_k > 0 else None
    results, scored, notes = {}, [], []
    for name in methods:
        method = create_method(name)
        if getattr(method, "composite", False) and shortlist_k > 0:
            notes.append(f"{name} skipped: it needs full scoring (use --shortlist-k 0)")
            continue
        with stage(progress, f"score {name}") as cb:
            if shortlist_k > 0 and method.per_image:
                r = identify_shortlist(cosine, method.identity_scorer(ctx), ctx.true_ids, ctx.n_ids,
                                       shortlist_k=shortlist_k, progress=cb, reranker=name)
            else:
                r = identify(method.identity_scorer(ctx), ctx.true_ids, ctx.n_ids, progress=cb, keep_matrix=name in keep,
                             max_impostors=max_impostors, chunk=method.probe_chunk)
        if isinstance(r, tuple):
            r, ctx.matrices[name] = r
        results[name] = r
        scored.append(name)
        if hasattr(method, "components"):
            notes.append(f"{name} = per-probe z-normalised " + " + per-probe z-normalised ".join(
                method.components(methods, ctx.scoring)))
    return results, scored, notes


def _subsample_curve(far: np.ndarray, tar: np.ndarray, n: int = 2000) -> tuple[list[float], list[float]]:
    if far.size <= n:
        return far.tolist(), tar.tolist()
    idx = np.unique(np.r_[0, np.linspace(0, far.size - 1, n // 2).astype(int),
                          np.searchsorted(far, np.logspace(-7, 0, n // 2)).clip(0, far.size - 1), far.size - 1])
    return far[idx].tolist(), tar[idx].tolist()


def verification_block(gen, imp, *, fars, threshold) -> tuple[dict, dict]:
    ver = M.verification_summary(gen, imp, fars=fars, threshold=threshold)
    roc = M.roc_curve(gen, imp)
    f, t = _subsample_curve(roc.far, roc.tar)
    return ver, {"roc_far": f, "roc_tar": t}


def brief_block(r, *, fars=M.DEFAULT_FARS) -> dict:
    """rank-1, rank-5 and TAR at each FAR: what training logs every epoch (no curves, no sorting
    beyond what TAR@FAR needs)."""
    block = {"rank1": M.rank_k(r.ranks, 1), "rank5": M.rank_k(r.ranks, 5)}
    for far in fars:
        block[M.far_key(far)] = float(M.tar_at_far(r.genuine, r.impostor, far)[0])
    return block


def identification_blocks(results: dict, *, n_ids: int, fars=M.DEFAULT_FARS, threshold=None) -> tuple[dict, dict, list]:
    """{method: IdentResult} -> (per-method metrics, per-method curves, notes)."""
    per_method, curves, notes = {}, {}, []
    max_rank = min(20, n_ids)
    for m, r in results.items():
        ver, curve = verification_block(r.genuine, r.impostor, fars=fars, threshold=threshold)
        block = {
            "rank1": M.rank_k(r.ranks, 1),
            "rank5": M.rank_k(r.ranks, 5),
            **ver,
            "probes_identified": int(r.ranks.size),
            "impostors_sampled": bool(r.impostors_sampled),
            "impostor_pairs_total": int(r.impostors_total),
        }
        if r.shortlist_k:
            block["shortlist_k"] = int(r.shortlist_k)
            notes.extend(f"{m}: {n}" for n in r.notes)
        per_method[m] = block
        curves[m] = {**curve, "cmc": M.cmc_from_ranks(r.ranks, max_rank).tolist(),
                     "genuine": r.genuine, "impostor": r.impostor}
    return per_method, curves, notes


def identity_index(gallery_ids, probe_ids) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Identity names -> (sorted gallery identities, gallery label per image, true label per probe or -1)."""
    names = sorted(set(gallery_ids))
    index = {n: i for i, n in enumerate(names)}
    g_labels = np.array([index[n] for n in gallery_ids], dtype=np.int64)
    true_ids = np.array([index.get(n, -1) for n in probe_ids], dtype=np.int64)
    return names, g_labels, true_ids


def identify_features(probes, gallery, *, probe_ids, gallery_ids, scoring, methods, device="cpu",
                      fars=M.DEFAULT_FARS, threshold=None, max_impostors: int = 50_000_000, brief: bool = True,
                      progress: StageProgress = None) -> dict[str, dict]:
    """Identification metrics of in-memory features (every row ok): {method: metrics block}.

    probes / gallery: `Features` (e.g. from `features_from_maps`); probe_ids / gallery_ids: the
    identity of each row. The same scoring and metrics as `evaluate_gallery`; `brief`: only
    rank-1/5 and TAR@FAR (`brief_block`), else the full block of eval-gallery's metrics.json."""
    names, g_labels, true_ids = identity_index(list(gallery_ids), list(probe_ids))
    if not (true_ids >= 0).any():
        raise DataError("no probe identity is in the gallery: nothing can be identified")
    ctx = IdentContext(probes=probes, gallery=gallery, p_rows=np.arange(len(true_ids)), g_rows=np.arange(len(g_labels)),
                       g_labels=g_labels, true_ids=true_ids, n_ids=len(names), scoring=scoring,
                       device=torch.device(device))
    results, _, _ = score_identification(ctx, list(methods), max_impostors=max_impostors, progress=progress)
    if brief:
        return {m: brief_block(r, fars=fars) for m, r in results.items()}
    return identification_blocks(results, n_ids=len(names), fars=fars, threshold=threshold)[0]
