"""The LFW pairs protocol through the engine: every pair scored by every method; k-fold accuracy
(threshold from the other folds), AUC, EER and TAR@FAR over all pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from occtool.errors import DataError
from occtool.evaluation import metrics as M
from occtool.evaluation.engine import StageProgress, stage, verification_block
from occtool.evaluation.gallery_eval import UNTRAINED_QACONV_NOTE, check_bad, extract_side
from occtool.evaluation.methods import PairContext, create_method, resolve_methods
from occtool.evaluation.pairs import DEFAULT_FOLDS, locate_pair_images, read_pairs


def evaluate_pairs(pairs_file: str | Path, root: str | Path, root_b: str | Path | None = None, *, em, methods=None,
                   flip: bool = True, threshold=None, max_bad: int = 0, batch_size: int = 64, device="cpu",
                   cache_dir=None, fars=M.DEFAULT_FARS, progress: StageProgress = None,
                   folds_of: int = DEFAULT_FOLDS) -> dict:
    """`root_b`: read the second image of every pair from another tree (an occluded copy): the
    masked-probe protocol. `folds_of`: folds of a plain-list pairs file (see read_pairs)."""
    pairs = read_pairs(pairs_file, folds_of=folds_of)
    scoring = em.scoring(flip=flip)
    methods = resolve_methods(methods, scoring)
    device = torch.device(device)
    paths_a, paths_b, missing = locate_pair_images(pairs, root, root_b)
    if missing:
        raise DataError(f"{len(missing)} pair image(s) not found (first: {', '.join(missing[:3])})")
    uniq: dict[Path, int] = {}
    for p in list(paths_a) + list(paths_b):
        uniq.setdefault(p, len(uniq))
    records = list(uniq)
    feats = extract_side(records, em, methods=methods, flip=flip, batch_size=batch_size, device=device,
                         cache_dir=cache_dir, progress=progress, name="images")
    bad = check_bad([feats], max_bad)
    ia, ib = np.array([uniq[p] for p in paths_a]), np.array([uniq[p] for p in paths_b])
    keep = feats.ok_mask[ia] & feats.ok_mask[ib]
    ia, ib = ia[keep], ib[keep]
    kept = [p for p, k in zip(pairs, keep) if k]
    if not kept:
        raise DataError("no pair has both images readable")
    labels = np.array([p.same for p in kept], dtype=bool)
    folds = np.array([p.fold for p in kept], dtype=np.int64)
    if labels.all() or not labels.any():
        raise DataError("the pairs need both same-person and different-person pairs")
    ctx = PairContext(feats=feats, ia=ia, ib=ib, scoring=scoring, device=device, requested=tuple(methods))
    scores, notes = score_pairs(ctx, methods, progress=progress)
    per_method, curves = _blocks(scores, labels, folds, fars=fars, threshold=threshold)
    if np.unique(folds).size < 2:
        notes.append("the pairs file has one fold: acc_10fold is not defined (see acc_best, tuned on the same pairs)")
    if not em.matcher_trained and any(m.startswith("qaconv") for m in methods):
        notes.append(UNTRAINED_QACONV_NOTE)
    counts = {
        "pairs": len(pairs), "pairs_used": len(kept), "pairs_dropped_bad_image": int((~keep).sum()),
        "same_pairs": int(labels.sum()), "different_pairs": int((~labels).sum()), "folds": int(np.unique(folds).size),
        "images": len(records), **bad,
        "byte_identical_pairs": int(sum(feats.hashes[a] == feats.hashes[b] for a, b in zip(ia, ib))),
        "images_resized": feats.n_resized, "cache_hits": feats.cache_hits,
    }
    metrics = {
        "mode": "pairs",
        "pairs_file": str(Path(pairs_file).resolve()),
        "root": str(Path(root).resolve()),
        "root_b": str(Path(root_b).resolve()) if root_b is not None else None,
        "methods": per_method,
        "counts": counts,
        "model": em.info,
        "flip": bool(flip),
        "protocol": (f"{counts['folds']}-fold: threshold chosen on the other {counts['folds'] - 1} folds, accuracy "
                     "on each held-out fold; mean and population std over folds (acc_10fold* whatever the count)"),
        "notes": notes,
    }
    rows = [{"fold": p.fold + 1, "same": int(p.same), "image_a": str(records[ia[j]]), "image_b": str(records[ib[j]]),
             **{m: f"{scores[m][j]:.6f}" for m in methods}} for j, p in enumerate(kept)]
    return {"metrics": metrics, "curves": curves, "rows": rows}


def score_pairs(ctx: PairContext, methods, *, progress: StageProgress = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every method's [N] pair scores (composite methods reuse their components' scores)."""
    notes = []
    for name in methods:
        method = create_method(name)
        if name in ctx.scores:
            continue
        with stage(progress, f"score {name}") as cb:
            ctx.progress = cb
            ctx.scores[name] = method.pair_scores(ctx)
        if hasattr(method, "components"):
            notes.append(f"{name} = z-normalised " + " + z-normalised ".join(method.components(methods, ctx.scoring))
                         + " (mean/std over all pair scores)")
    return {m: ctx.scores[m] for m in methods}, notes


def _blocks(scores: dict, labels: np.ndarray, folds: np.ndarray, *, fars, threshold) -> tuple[dict, dict]:
    per_method, curves = {}, {}
    for m, s in scores.items():
        ver, curve = verification_block(s[labels], s[~labels], fars=fars, threshold=threshold)
        if np.unique(folds).size >= 2:
            kf = M.kfold_accuracy(s, labels, folds)
            per_method[m] = {"acc_10fold": kf.mean, "acc_10fold_std": kf.std,
                             "fold_accuracies": kf.fold_accuracies, "fold_thresholds": kf.thresholds, **ver}
        else:  # a one-fold file (View 1): no held-out threshold is possible
            per_method[m] = {"acc_10fold": None, "acc_10fold_std": None, **ver}
        curves[m] = {**curve, "genuine": s[labels], "impostor": s[~labels]}
    return per_method, curves
