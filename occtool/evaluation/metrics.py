"""Verification and identification metrics from raw scores (numpy only, no torch).

Conventions
-----------
- A higher score means "more likely the same person"; a pair is *accepted* at threshold t when
  `score >= t`.
- Verification works on two 1-D arrays: `genuine` (same-person scores) and `impostor`
  (different-person scores).
- Ties are handled **pessimistically** wherever a choice exists:
  * ROC: all pairs with the same score are accepted or rejected together (a tie group is one
    step of the curve), so `tar_at_far` never counts a false accept away.
  * identification rank: a gallery entry scoring *equal* to the true one is ranked ahead of it
    (rank = 1 + number of other entries with score >= the true score); a constant scorer
    therefore gets rank G, never a lucky rank 1.
  * AUC is the area under that ROC (trapezoids), which equals the Mann-Whitney probability
    P(genuine > impostor) + 0.5 * P(genuine == impostor) (the standard definition; it matches
    `sklearn.metrics.roc_auc_score`).
- Non-finite scores are an error (they would silently sort anywhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from occtool.errors import OcctoolError

DEFAULT_FARS = (1e-3, 1e-2)  # the FAR points every report gives TAR at


def _as_scores(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size and not np.all(np.isfinite(arr)):
        raise OcctoolError(f"{name}: {int(np.sum(~np.isfinite(arr)))} non-finite score(s)")
    return arr


def _check_both(genuine, impostor) -> tuple[np.ndarray, np.ndarray]:
    gen = _as_scores("genuine scores", genuine)
    imp = _as_scores("impostor scores", impostor)
    if gen.size == 0 or imp.size == 0:
        raise OcctoolError(
            f"verification needs genuine and impostor scores (got {gen.size} genuine, {imp.size} impostor)"
        )
    return gen, imp


@dataclass(frozen=True)
class Roc:
    """ROC points, thresholds descending; point i accepts every score >= thresholds[i].

    The first point is (far=0, tar=0) at threshold +inf; the last is (1, 1) at the lowest score.
    """

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray


def roc_curve(genuine, impostor) -> Roc:
    """ROC from genuine/impostor scores, one point per distinct score (see module doc for ties)."""
    gen, imp = _check_both(genuine, impostor)
    scores = np.concatenate([gen, imp])
    labels = np.concatenate([np.ones(gen.size, dtype=bool), np.zeros(imp.size, dtype=bool)])
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    lab = labels[order]
    tp = np.cumsum(lab)
    fp = np.cumsum(~lab)
    # keep the last index of every run of equal scores: a tie group moves as one step
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tar = np.r_[0.0, tp[last] / gen.size]
    far = np.r_[0.0, fp[last] / imp.size]
    thr = np.r_[np.inf, s[last]]
    return Roc(far=far, tar=tar, thresholds=thr)


def auc(genuine, impostor) -> float:
    """Area under the ROC (trapezoids); ties between a genuine and an impostor count 1/2."""
    roc = roc_curve(genuine, impostor)
    return float(np.trapezoid(roc.tar, roc.far)) if hasattr(np, "trapezoid") else float(np.trapz(roc.tar, roc.far))


def tar_at_far(genuine, impostor, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the lowest threshold whose false-accept rate is <= `far`.

    Only thresholds at observed scores are considered (no interpolation), so with fewer than
    1/far impostors this is the TAR with zero false accepts. The threshold +inf (nothing
    accepted, TAR 0) is returned when even the highest impostor score exceeds the budget.
    """
    if not 0.0 <= far <= 1.0:
        raise OcctoolError(f"far must be in [0, 1], got {far}")
    roc = roc_curve(genuine, impostor)
    ok = np.nonzero(roc.far <= far + 1e-12)[0]
    i = ok[-1]  # far is non-decreasing along the curve, tar too: the last allowed point is best
    return float(roc.tar[i]), float(roc.thresholds[i])


def eer(genuine, impostor) -> tuple[float, float]:
    """(equal error rate, threshold): where FAR equals FRR = 1 - TAR.

    Linear interpolation between the two ROC points around the crossing; the threshold is the
    score of the point at the crossing (the upper one when it lies strictly between points).
    """
    roc = roc_curve(genuine, impostor)
    frr = 1.0 - roc.tar
    diff = roc.far - frr  # starts at -1 (far 0, frr 1), ends at +1
    j = int(np.nonzero(diff >= 0)[0][0])
    if diff[j] == 0 or j == 0:
        return float(roc.far[j]), float(roc.thresholds[j])
    i = j - 1
    # segment from point i (diff<0) to j (diff>=0): find t where far(t) = frr(t)
    t = -diff[i] / (diff[j] - diff[i])
    rate = roc.far[i] + t * (roc.far[j] - roc.far[i])
    return float(rate), float(roc.thresholds[j])


def accuracy_at_threshold(genuine, impostor, threshold: float) -> float:
    """Fraction of pairs classified right when accepting `score >= threshold`."""
    gen, imp = _check_both(genuine, impostor)
    correct = int(np.sum(gen >= threshold)) + int(np.sum(imp < threshold))
    return correct / (gen.size + imp.size)


def best_threshold(scores, labels) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of `score >= threshold` on labelled pairs.

    Candidates are the midpoints between consecutive distinct scores plus one below the lowest
    and one above the highest, so the chosen threshold never sits on a score of the tuning set.
    When several candidates reach the best accuracy the middle one (by position) is taken: a
    deterministic choice away from the edges of the best interval.
    """
    s = _as_scores("scores", scores)
    y = np.asarray(labels).astype(bool).reshape(-1)
    if s.size != y.size:
        raise OcctoolError(f"best_threshold: {s.size} scores but {y.size} labels")
    if s.size == 0:
        raise OcctoolError("best_threshold: no pairs")
    u = np.unique(s)
    cands = np.r_[u[0] - 1.0, (u[:-1] + u[1:]) / 2.0, u[-1] + 1.0]
    # accuracy(c) = (#genuine >= c + #impostor < c) / n, vectorised with sorted arrays
    gen = np.sort(s[y])
    imp = np.sort(s[~y])
    n_gen_accept = gen.size - np.searchsorted(gen, cands, side="left")
    n_imp_reject = np.searchsorted(imp, cands, side="left")
    acc = (n_gen_accept + n_imp_reject) / s.size
    best = np.nonzero(acc >= acc.max() - 1e-15)[0]
    k = int(best[(best.size - 1) // 2])
    return float(cands[k]), float(acc[k])


@dataclass(frozen=True)
class KFoldResult:
    mean: float
    std: float  # population std (ddof=0) over folds, as the usual LFW reports
    fold_accuracies: list[float]
    thresholds: list[float]


def kfold_accuracy(scores, labels, folds) -> KFoldResult:
    """LFW protocol: for each fold, the threshold is chosen on the other folds and applied to it."""
    s = _as_scores("scores", scores)
    y = np.asarray(labels).astype(bool).reshape(-1)
    f = np.asarray(folds).reshape(-1)
    if not (s.size == y.size == f.size):
        raise OcctoolError(f"kfold_accuracy: {s.size} scores, {y.size} labels, {f.size} fold ids")
    ids = np.unique(f)
    if ids.size < 2:
        raise OcctoolError(f"kfold_accuracy needs at least 2 folds, got {ids.size}")
    accs, thrs = [], []
    for k in ids:
        test = f == k
        thr, _ = best_threshold(s[~test], y[~test])
        accs.append(float(np.mean((s[test] >= thr) == y[test])))
        thrs.append(thr)
    return KFoldResult(mean=float(np.mean(accs)), std=float(np.std(accs)), fold_accuracies=accs, thresholds=thrs)


def ranks_from_scores(scores, true_index) -> np.ndarray:
    """1-based rank of the true gallery entry for each probe; pessimistic on ties.

    scores [P, G]; true_index [P] (int, the column of the probe's identity). Rank =
    1 + number of *other* columns with a score >= the true score.
    """
    sc = np.asarray(scores, dtype=np.float64)
    ti = np.asarray(true_index, dtype=np.int64).reshape(-1)
    if sc.ndim != 2 or sc.shape[0] != ti.size:
        raise OcctoolError(f"ranks_from_scores: scores {sc.shape} vs true_index {ti.shape}")
    if ti.size and (ti.min() < 0 or ti.max() >= sc.shape[1]):
        raise OcctoolError("ranks_from_scores: a true index is outside the gallery")
    if sc.size and not np.all(np.isfinite(sc)):
        raise OcctoolError("ranks_from_scores: non-finite score(s)")
    true = sc[np.arange(ti.size), ti]
    return (np.sum(sc >= true[:, None], axis=1)).astype(np.int64)  # includes itself -> already 1-based


def cmc_from_ranks(ranks, max_rank: int) -> np.ndarray:
    """CMC [max_rank]: entry k-1 = fraction of probes whose true rank is <= k."""
    r = np.asarray(ranks).reshape(-1)
    if r.size == 0:
        raise OcctoolError("CMC needs at least one probe whose identity is in the gallery")
    ks = np.arange(1, max_rank + 1)
    return (r[None, :] <= ks[:, None]).mean(axis=1)


def cmc(scores, true_index, max_rank: int | None = None) -> np.ndarray:
    """CMC from a [P, G] score matrix and the true column per probe (pessimistic ties)."""
    sc = np.asarray(scores)
    ranks = ranks_from_scores(sc, true_index)
    return cmc_from_ranks(ranks, max_rank or sc.shape[1])


def rank_k(ranks, k: int) -> float:
    r = np.asarray(ranks).reshape(-1)
    if r.size == 0:
        raise OcctoolError("rank-k accuracy needs at least one probe whose identity is in the gallery")
    return float(np.mean(r <= k))


def verification_summary(genuine, impostor, *, fars=DEFAULT_FARS, threshold: float | None = None) -> dict:
    """The verification block of metrics.json: auc, eer, tar@far=..., best and fixed-threshold acc."""
    gen, imp = _check_both(genuine, impostor)
    out: dict = {"auc": auc(gen, imp)}
    rate, thr = eer(gen, imp)
    out["eer"] = rate
    out["eer_threshold"] = thr
    for far in fars:
        tar, t = tar_at_far(gen, imp, far)
        out[far_key(far)] = tar
        out[far_key(far).replace("tar@", "threshold@")] = t if np.isfinite(t) else None
    scores = np.concatenate([gen, imp])
    labels = np.concatenate([np.ones(gen.size, bool), np.zeros(imp.size, bool)])
    t_best, a_best = best_threshold(scores, labels)
    out["acc_best"] = a_best  # tuned on the very pairs it is measured on: optimistic
    out["threshold_best"] = t_best
    if threshold is not None:
        out["threshold"] = float(threshold)
        out["acc@threshold"] = accuracy_at_threshold(gen, imp, threshold)
        out["tar@threshold"] = float(np.mean(gen >= threshold))
        out["far@threshold"] = float(np.mean(imp >= threshold))
    out["n_genuine"] = int(gen.size)
    out["n_impostor"] = int(imp.size)
    return out


def far_key(far: float) -> str:
    """'tar@far=1e-3' style key for a FAR value."""
    return f"tar@far={far:.0e}".replace("e-0", "e-")


# --------------------------------------------------------------------------- occlusion maps
def occlusion_iou(pred_vis: np.ndarray, gt_vis: np.ndarray, threshold: float = 0.5) -> tuple[float, int]:
    """Mean IoU of the occluded cells (visibility < threshold) over images whose union is not empty.

    pred_vis, gt_vis: [N, ...] visibility in [0, 1] (same shape). Returns (mean IoU, images counted);
    (nan, 0) when no image has an occluded cell on either side.
    """
    p = np.asarray(pred_vis).reshape(len(pred_vis), -1) < threshold
    g = np.asarray(gt_vis).reshape(len(gt_vis), -1) < threshold
    inter = (p & g).sum(1)
    union = (p | g).sum(1)
    ok = union > 0
    if not ok.any():
        return float("nan"), 0
    return float((inter[ok] / union[ok]).mean()), int(ok.sum())


def occlusion_mae(pred_vis: np.ndarray, gt_vis: np.ndarray) -> float:
    """Mean absolute difference between predicted and true visibility over all cells of all images."""
    p = np.asarray(pred_vis, dtype=np.float64).reshape(len(pred_vis), -1)
    g = np.asarray(gt_vis, dtype=np.float64).reshape(len(gt_vis), -1)
    if p.shape != g.shape:
        raise OcctoolError(f"occlusion_mae: shapes differ: {p.shape} vs {g.shape}")
    return float(np.abs(p - g).mean()) if p.size else float("nan")
