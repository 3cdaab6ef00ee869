"""Evaluation orchestrations: `evaluate_gallery` (identification + verification over a
gallery/probe split) and `evaluate_pairs` (the LFW pairs protocol). No printing: they return
a result dict {"metrics": JSON-able dict, "curves": per-method arrays, "rows": scores.csv rows}.

Methods (all side by side):
- `cosine`: identity embedding (flip TTA by default), templates = re-normalised mean per identity.
- `cosine_occ` (checkpoint): occlusion-aware embedding `embed(feature_map * predicted visibility)`.
- `cosine_occ_matched` (checkpoint): visibility-matched embeddings: for every (probe, gallery
  image) pair both are embedded through the joint visibility v_probe * v_gallery, so both read
  only where both faces are visible (`occtool.matching.visibility_matched`); identity = best image.
- `qaconv`: QAConv on the matching maps, no visibility. With a plain pretrained backbone this is
  the parameter-free, *untrained* matcher on the backbone's 512x7x7 maps (known to be weak).
- `qaconv_occ` (checkpoint): QAConv with the predicted visibility of probe and gallery.
- `fused` (on request): z-normalised cosine + z-normalised qaconv_occ (or qaconv).
"""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from occtool.errors import DataError, OcctoolError
from occtool.evaluation import metrics as M
from occtool.evaluation.extract import Features, extract_features, model_identity
from occtool.evaluation.leakage import check_content_leakage, overlap_report
from occtool.evaluation.pairs import locate_pair_images, read_pairs
from occtool.evaluation.scoring import (
    CosineScorer,
    FusedScorer,
    QAConvScorer,
    StoredScorer,
    cosine_pair_scores,
    identify,
    identify_shortlist,
    identity_templates,
    qaconv_pair_scores,
    znorm_global,
)

ALL_METHODS = ("cosine", "cosine_occ", "cosine_occ_matched", "qaconv", "qaconv_occ", "fused")
DEFAULT_FARS = (1e-3, 1e-2)
AUTO_SHORTLIST_GALLERY = 10_000  # gallery images above which QAConv uses a cosine shortlist
AUTO_SHORTLIST_K = 100

StageProgress = Callable[[str], object] | None  # stage name -> context manager yielding ProgressFn


@dataclass
class EvalModel:
    """A model ready for evaluation and what it allows."""

    model: torch.nn.Module  # Backbone or FaceModel
    matcher: torch.nn.Module | None  # QAConvMatcher (trained from a checkpoint, or untrained)
    kind: str  # "backbone" | "checkpoint"
    backbone: str
    source: str  # the weights or checkpoint file
    matcher_trained: bool
    has_visibility: bool
    info: dict = field(default_factory=dict)
    output_layer_affine: bool = False  # the backbone's output layer is affine (cosine_occ_matched)

    def available_methods(self) -> list[str]:
        m = ["cosine"]
        if self.has_visibility:
            m.append("cosine_occ")
            if self.output_layer_affine:
                m.append("cosine_occ_matched")
        if self.matcher is not None:
            m.append("qaconv")
            if self.has_visibility:
                m.append("qaconv_occ")
        return m

    def cache_key(self, flip: bool) -> str | None:
        return model_identity(backbone=self.backbone, weights_file=self.source, flip=flip, kind=self.kind)


def load_eval_model(*, backbone: str | None = None, weights: str | Path | None = None,
                    checkpoint: str | Path | None = None) -> EvalModel:
    """`--checkpoint FILE` (occtool model + matcher) or `--backbone NAME [--weights FILE]`."""
    if checkpoint is not None and (backbone is not None or weights is not None):
        raise OcctoolError("give either --checkpoint or --backbone/--weights, not both")
    if checkpoint is not None:
        from occtool.models import load_model_checkpoint

        ck = load_model_checkpoint(checkpoint, map_location="cpu")
        model = ck.model
        matcher = ck.matcher
        trained = matcher is not None and bool(getattr(matcher, "is_trained", False))
        if matcher is None:
            matcher = _untrained_matcher_for(model)
        from occtool.matching.visibility_matched import is_affine

        return EvalModel(
            model=model, matcher=matcher, kind="checkpoint", backbone=model.backbone.name,
            source=str(checkpoint), matcher_trained=trained, has_visibility=True,
            output_layer_affine=is_affine(model.backbone.eval(), device="cpu"),
            info={"checkpoint": str(Path(checkpoint).resolve()), "backbone": model.backbone.name,
                  "matcher": "trained QAConv head" if trained else "untrained QAConv (no trained head in checkpoint)"},
        )
    if backbone is None:
        raise OcctoolError("give --backbone NAME (with --weights FILE) or --checkpoint FILE")
    from occtool.models import build_backbone, default_weights

    if weights is None:
        weights = default_weights(backbone)
        if weights is None:
            raise OcctoolError(f"--weights FILE is needed for backbone {backbone} (no default weights known)")
    if not Path(weights).is_file():
        raise OcctoolError(f"weights file not found: {weights}")
    model = build_backbone(backbone, weights=weights)
    return EvalModel(
        model=model, matcher=_untrained_matcher_for(model), kind="backbone", backbone=backbone,
        source=str(weights), matcher_trained=False, has_visibility=False,
        info={"backbone": backbone, "weights": str(Path(weights).resolve()),
              "matcher": "untrained, parameter-free QAConv on the backbone feature maps"},
    )


def _untrained_matcher_for(model) -> torch.nn.Module | None:
    try:
        from occtool.matching import QAConvMatcher
    except ImportError:  # matching not available: QAConv methods are not offered
        return None
    bb = model.backbone if hasattr(model, "backbone") else model
    channels = getattr(model, "match_channels", None) or getattr(model, "neck_channels", None) or bb.feature_channels
    h, w = bb.feature_size
    return QAConvMatcher(num_features=int(channels), height=int(h), width=int(w)).eval()


def resolve_methods(requested, em: EvalModel) -> list[str]:
    """None/'auto'/[] -> every available method (fused only on request); else validated list."""
    avail = em.available_methods()
    if requested is None or requested == "auto" or list(requested) in ([], ["auto"]):
        return avail
    if isinstance(requested, str):
        requested = [m.strip() for m in requested.split(",") if m.strip()]
    out = []
    for m in requested:
        if m not in ALL_METHODS:
            raise OcctoolError(f"--methods: unknown method {m!r}; known: {', '.join(ALL_METHODS)}")
        if m == "fused":
            if "qaconv" not in avail:
                raise OcctoolError("--methods fused needs a QAConv matcher (and cosine)")
        elif m not in avail:
            why = ("needs --checkpoint (a model with an occlusion head)" if "_occ" in m and not em.has_visibility
                   else "needs a backbone whose output layer is affine in the feature map" if m == "cosine_occ_matched"
                   else "is not available")
            raise OcctoolError(f"--methods {m} {why}; available here: {', '.join(avail)}")
        if m not in out:
            out.append(m)
    return out


def _stage(progress: StageProgress, name: str):
    return progress(name) if progress is not None else nullcontext(None)


def _extract(records, em: EvalModel, *, methods, flip, batch_size, device, cache_dir, progress, name,
             maps_file=None) -> Features:
    with_maps = any(m.startswith("qaconv") or m == "fused" for m in methods)
    with _stage(progress, name) as cb:
        return extract_features(
            records, model=em.model.to(device), device=device, batch_size=batch_size, flip=flip,
            cache_dir=cache_dir, progress=cb, model_key=em.cache_key(flip) if cache_dir else None,
            with_maps=with_maps, maps_file=maps_file, with_contributions="cosine_occ_matched" in methods,
        )


def _matched_scorer(em: EvalModel, flip: bool, device):
    from occtool.matching.visibility_matched import VisibilityMatchedScorer, output_layer_bias

    bias = output_layer_bias(em.model.backbone.eval(), device=next(em.model.parameters()).device)
    return VisibilityMatchedScorer(bias=bias.cpu(), views=2 if flip else 1).to(device)  # views as extracted


def _check_bad(feats: list[Features], max_bad: int) -> dict:
    n_bad = sum(f.n_bad for f in feats)
    errors = [e for f in feats for e in f.errors]
    if n_bad > max_bad:
        raise DataError(
            f"{n_bad} image(s) failed to load (limit --max-bad {max_bad}); first: {errors[0] if errors else '?'}"
        )
    return {"bad_images": n_bad, "bad_examples": errors[:10]}


def _subsample_curve(far: np.ndarray, tar: np.ndarray, n: int = 2000) -> tuple[list[float], list[float]]:
    if far.size <= n:
        return far.tolist(), tar.tolist()
    idx = np.unique(np.r_[0, np.linspace(0, far.size - 1, n // 2).astype(int),
                          np.searchsorted(far, np.logspace(-7, 0, n // 2)).clip(0, far.size - 1), far.size - 1])
    return far[idx].tolist(), tar[idx].tolist()


def _verification_block(gen, imp, *, fars, threshold) -> tuple[dict, dict]:
    ver = M.verification_summary(gen, imp, fars=fars, threshold=threshold)
    roc = M.roc_curve(gen, imp)
    f, t = _subsample_curve(roc.far, roc.tar)
    return ver, {"roc_far": f, "roc_tar": t}


# ------------------------------------------------------------------------------- identification
def evaluate_gallery(
    gallery_records,
    probe_records,
    *,
    em: EvalModel,
    methods=None,
    flip: bool = True,
    threshold: float | None = None,
    max_bad: int = 0,
    batch_size: int = 64,
    device="cpu",
    cache_dir: str | Path | None = None,
    shortlist_k: int | None = None,
    fars=DEFAULT_FARS,
    max_impostors: int = 50_000_000,
    progress: StageProgress = None,
) -> dict:
    """Identification (rank-1/5, CMC) and verification (ROC, AUC, EER, TAR@FAR) of probes against
    gallery identities, for every method. See the module doc."""
    if not gallery_records:
        raise DataError("the gallery is empty: no images to enrol")
    if not probe_records:
        raise DataError("there are no probe images")
    methods = resolve_methods(methods, em)
    device = torch.device(device)
    with tempfile.TemporaryDirectory(prefix="occtool_eval_") as tmp:
        return _evaluate_gallery(gallery_records, probe_records, em=em, methods=methods, flip=flip,
                                 threshold=threshold, max_bad=max_bad, batch_size=batch_size, device=device,
                                 cache_dir=cache_dir, shortlist_k=shortlist_k, fars=fars,
                                 max_impostors=max_impostors, progress=progress, tmp=Path(tmp))


def _evaluate_gallery(gallery_records, probe_records, *, em, methods, flip, threshold, max_bad, batch_size,
                      device, cache_dir, shortlist_k, fars, max_impostors, progress, tmp: Path) -> dict:
    # feature maps of a large side go to a memory-mapped file, so RAM stays bounded
    big = AUTO_SHORTLIST_GALLERY
    gf = _extract(gallery_records, em, methods=methods, flip=flip, batch_size=batch_size, device=device,
                  cache_dir=cache_dir, progress=progress, name="gallery",
                  maps_file=tmp / "gallery_maps.npy" if len(gallery_records) > big else None)
    pf = _extract(probe_records, em, methods=methods, flip=flip, batch_size=batch_size, device=device,
                  cache_dir=cache_dir, progress=progress, name="probes",
                  maps_file=tmp / "probe_maps.npy" if len(probe_records) > big else None)
    bad = _check_bad([gf, pf], max_bad)
    check_content_leakage(gf.hashes, pf.hashes, gf.paths, pf.paths)

    g_ok = np.nonzero(gf.ok_mask)[0]
    p_ok = np.nonzero(pf.ok_mask)[0]
    if g_ok.size == 0:
        raise DataError("the gallery is empty: every gallery image failed to load")
    if p_ok.size == 0:
        raise DataError("every probe image failed to load")
    g_names = [gallery_records[i].identity for i in g_ok]
    p_names = [probe_records[i].identity for i in p_ok]
    overlap = overlap_report(g_names, p_names, [gf.hashes[i] for i in g_ok], [pf.hashes[i] for i in p_ok])
    id_names = sorted(set(g_names))
    id_index = {n: i for i, n in enumerate(id_names)}
    n_ids = len(id_names)
    g_labels = np.array([id_index[n] for n in g_names], dtype=np.int64)
    true_ids = np.array([id_index.get(n, -1) for n in p_names], dtype=np.int64)
    n_known = int((true_ids >= 0).sum())
    if n_known == 0:
        raise DataError("no probe identity is in the gallery: nothing can be identified")

    if shortlist_k is None:
        shortlist_k = AUTO_SHORTLIST_K if g_ok.size > AUTO_SHORTLIST_GALLERY else 0
    g_idx = torch.as_tensor(g_ok)
    p_idx = torch.as_tensor(p_ok)
    pe = pf.embeddings[p_idx]
    templates = identity_templates(gf.embeddings[g_idx], g_labels, n_ids)
    cos_scorer = CosineScorer(pe, templates, device=device)

    def matched_scorer() -> QAConvScorer:  # same per-image-then-best-image scheme as QAConv
        return QAConvScorer(
            _matched_scorer(em, flip, device), pf.contributions, gf.contributions, g_labels, n_ids, device=device,
            probe_vis=pf.visibility_views, gallery_vis=gf.visibility_views, probe_rows=p_ok, gallery_rows=g_ok,
            gallery_chunk=1024,
        )

    def qa_scorer(use_vis: bool) -> QAConvScorer:
        return QAConvScorer(
            em.matcher, pf.match_maps, gf.match_maps, g_labels, n_ids, device=device,
            probe_vis=pf.occlusion if use_vis else None, gallery_vis=gf.occlusion if use_vis else None,
            probe_rows=p_ok, gallery_rows=g_ok,
        )

    results = {}
    matrices: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    keep = "fused" in methods and shortlist_k == 0
    for m in methods:
        if m == "fused":
            continue
        with _stage(progress, f"score {m}") as cb:
            if m == "cosine":
                r = identify(cos_scorer, true_ids, n_ids, progress=cb, keep_matrix=keep, max_impostors=max_impostors)
            elif m == "cosine_occ":
                sc = CosineScorer(pf.occ_embeddings[p_idx],
                                  identity_templates(gf.occ_embeddings[g_idx], g_labels, n_ids), device=device)
                r = identify(sc, true_ids, n_ids, progress=cb, keep_matrix=keep, max_impostors=max_impostors)
            else:
                qs = matched_scorer() if m == "cosine_occ_matched" else qa_scorer(m == "qaconv_occ")
                if shortlist_k > 0:
                    r = identify_shortlist(cos_scorer, qs, true_ids, n_ids, shortlist_k=shortlist_k, progress=cb,
                                           reranker=m)
                else:
                    r = identify(qs, true_ids, n_ids, progress=cb, keep_matrix=keep, max_impostors=max_impostors,
                                 chunk=64)
        if isinstance(r, tuple):
            r, matrices[m] = r
        results[m] = r
    if "fused" in methods:
        qa_name = "qaconv_occ" if "qaconv_occ" in matrices else "qaconv"
        if shortlist_k > 0:
            notes.append("fused skipped: it needs full scoring (use --shortlist-k 0)")
            methods = [m for m in methods if m != "fused"]
        else:
            with _stage(progress, "score fused") as cb:
                cos_m = matrices.get("cosine")
                if cos_m is None:
                    _, cos_m = identify(cos_scorer, true_ids, n_ids, keep_matrix=True)
                qa_m = matrices.get(qa_name)
                if qa_m is None:
                    _, qa_m = identify(qa_scorer(qa_name == "qaconv_occ"), true_ids, n_ids, keep_matrix=True, chunk=64)
                fs = FusedScorer([StoredScorer(cos_m), StoredScorer(qa_m)])
                results["fused"] = identify(fs, true_ids, n_ids, progress=cb, max_impostors=max_impostors)
            notes.append(f"fused = per-probe z-normalised cosine + per-probe z-normalised {qa_name}")

    per_method: dict[str, dict] = {}
    curves: dict[str, dict] = {}
    max_rank = min(20, n_ids)
    for m in methods:
        r = results[m]
        ver, curve = _verification_block(r.genuine, r.impostor, fars=fars, threshold=threshold)
        cmc = M.cmc_from_ranks(r.ranks, max_rank)
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
        curves[m] = {**curve, "cmc": cmc.tolist(), "genuine": r.genuine, "impostor": r.impostor}

    rows = []
    for m in methods:
        r = results[m]
        for j, pi in enumerate(p_ok):
            t = int(true_ids[j])
            tops = [id_names[i] for i in r.top_ids[j, :5]]
            rows.append({
                "method": m,
                "probe": str(probe_records[pi].relpath),
                "identity": p_names[j],
                "in_gallery": t >= 0,
                "rank": int(r.rank_all[j]) if t >= 0 else "",
                "genuine_score": f"{r.genuine_all[j]:.6f}" if t >= 0 else "",
                "top1_identity": tops[0],
                "top1_score": f"{r.top_scores[j, 0]:.6f}",
                "top5": "|".join(tops),
            })

    if not em.matcher_trained and any(m.startswith("qaconv") for m in methods):
        notes.append("qaconv here is the untrained, parameter-free matcher (no learned QAConv head): expect it to be weak")
    counts = {
        "gallery_images": int(len(gallery_records)),
        "gallery_images_used": int(g_ok.size),
        "gallery_identities": n_ids,
        "probe_images": int(len(probe_records)),
        "probe_images_used": int(p_ok.size),
        "probes_with_gallery_identity": n_known,
        "probes_without_gallery_identity": int(p_ok.size - n_known),
        **bad,
        "images_resized": gf.n_resized + pf.n_resized,
        "cache_hits": gf.cache_hits + pf.cache_hits,
    }
    metrics = {
        "mode": "identification",
        "methods": per_method,
        "counts": counts,
        "overlap": overlap.as_dict(),
        "model": em.info,
        "flip": bool(flip),
        "shortlist_k": int(shortlist_k),
        "ties": "pessimistic: a gallery identity scoring equal to the true one ranks ahead of it",
        "notes": notes,
    }
    return {"metrics": metrics, "curves": curves, "rows": rows}


# ----------------------------------------------------------------------------------------- pairs
def evaluate_pairs(
    pairs_file: str | Path,
    root: str | Path,
    root_b: str | Path | None = None,
    *,
    em: EvalModel,
    methods=None,
    flip: bool = True,
    threshold: float | None = None,
    max_bad: int = 0,
    batch_size: int = 64,
    device="cpu",
    cache_dir: str | Path | None = None,
    fars=(1e-3, 1e-2),
    progress: StageProgress = None,
) -> dict:
    """The LFW pairs protocol: every pair scored by every method; 10-fold accuracy (threshold
    from the other 9 folds), AUC, EER and TAR@FAR over all pairs. `root_b`: read the second
    image of every pair from another tree (an occluded copy): the masked-probe protocol."""
    pairs = read_pairs(pairs_file)
    methods = resolve_methods(methods, em)
    device = torch.device(device)
    paths_a, paths_b, missing = locate_pair_images(pairs, root, root_b)
    if missing:
        raise DataError(f"{len(missing)} pair image(s) not found (first: {', '.join(missing[:3])})")
    uniq: dict[Path, int] = {}
    for p in list(paths_a) + list(paths_b):
        uniq.setdefault(p, len(uniq))
    records = list(uniq)
    feats = _extract(records, em, methods=methods, flip=flip, batch_size=batch_size, device=device,
                     cache_dir=cache_dir, progress=progress, name="images")
    bad = _check_bad([feats], max_bad)
    ia = np.array([uniq[p] for p in paths_a])
    ib = np.array([uniq[p] for p in paths_b])
    keep = feats.ok_mask[ia] & feats.ok_mask[ib]
    ia, ib = ia[keep], ib[keep]
    kept = [p for p, k in zip(pairs, keep) if k]
    if not kept:
        raise DataError("no pair has both images readable")
    labels = np.array([p.same for p in kept], dtype=bool)
    folds = np.array([p.fold for p in kept], dtype=np.int64)
    if labels.all() or not labels.any():
        raise DataError("the pairs need both same-person and different-person pairs")
    identical = int(sum(feats.hashes[a] == feats.hashes[b] for a, b in zip(ia, ib)))

    ta, tb = torch.as_tensor(ia), torch.as_tensor(ib)
    scores: dict[str, np.ndarray] = {}
    for m in methods:
        if m == "fused":
            continue
        with _stage(progress, f"score {m}") as cb:
            if m in ("cosine", "cosine_occ"):
                emb = feats.embeddings if m == "cosine" else feats.occ_embeddings
                s = cosine_pair_scores(emb[ta], emb[tb])
                if cb is not None:
                    cb(len(s), len(s))
            elif m == "cosine_occ_matched":
                ms = _matched_scorer(em, flip, "cpu")
                c, v = torch.as_tensor(np.asarray(feats.contributions)), feats.visibility_views
                s = np.concatenate([ms.pair_scores(c[ta[i:i + 512]], c[tb[i:i + 512]], v[ta[i:i + 512]],
                                                   v[tb[i:i + 512]]).numpy() for i in range(0, len(ta), 512)])
                if cb is not None:
                    cb(len(s), len(s))
            else:
                s = qaconv_pair_scores(
                    em.matcher, feats.match_maps, ia, ib, feats.occlusion if m == "qaconv_occ" else None,
                    device=device, chunk=16 if device.type == "cpu" else 64, progress=cb,
                )
        scores[m] = s
    notes: list[str] = []
    if np.unique(folds).size < 2:
        notes.append("the pairs file has one fold: acc_10fold is not defined (see acc_best, tuned on the same pairs)")
    if "fused" in methods:
        qa_name = "qaconv_occ" if "qaconv_occ" in methods else "qaconv"
        for need in ("cosine", qa_name):
            if need not in scores:
                raise OcctoolError(f"--methods fused needs {need} in --methods too")
        scores["fused"] = znorm_global(scores["cosine"]) + znorm_global(scores[qa_name])
        notes.append(f"fused = z-normalised cosine + z-normalised {qa_name} (mean/std over all pair scores)")

    per_method, curves = {}, {}
    for m in methods:
        s = scores[m]
        ver, curve = _verification_block(s[labels], s[~labels], fars=fars, threshold=threshold)
        if np.unique(folds).size >= 2:
            kf = M.kfold_accuracy(s, labels, folds)
            per_method[m] = {"acc_10fold": kf.mean, "acc_10fold_std": kf.std,
                             "fold_accuracies": kf.fold_accuracies, "fold_thresholds": kf.thresholds, **ver}
        else:  # a one-fold file (View 1): no held-out threshold is possible
            per_method[m] = {"acc_10fold": None, "acc_10fold_std": None, **ver}
        curves[m] = {**curve, "genuine": s[labels], "impostor": s[~labels]}
    if not em.matcher_trained and any(m.startswith("qaconv") for m in methods):
        notes.append("qaconv here is the untrained, parameter-free matcher (no learned QAConv head): expect it to be weak")
    rows = []
    for j, p in enumerate(kept):
        row = {"fold": p.fold + 1, "same": int(p.same), "image_a": str(records[ia[j]]), "image_b": str(records[ib[j]])}
        for m in methods:
            row[m] = f"{scores[m][j]:.6f}"
        rows.append(row)
    counts = {
        "pairs": len(pairs),
        "pairs_used": len(kept),
        "pairs_dropped_bad_image": int((~keep).sum()),
        "same_pairs": int(labels.sum()),
        "different_pairs": int((~labels).sum()),
        "folds": int(np.unique(folds).size),
        "images": len(records),
        **bad,
        "byte_identical_pairs": identical,
        "images_resized": feats.n_resized,
        "cache_hits": feats.cache_hits,
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
        "protocol": "threshold chosen on 9 folds, accuracy on the 10th; mean and population std over folds",
        "notes": notes,
    }
    return {"metrics": metrics, "curves": curves, "rows": rows}
