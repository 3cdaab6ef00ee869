"""`visualize-occlusion pair` as a library call: score pairs with every method of a checkpoint
and explain them (QAConv correspondences, visibility-matched contributions). Returns a
`VisualResult` (metrics, one CSV row per pair, figure builders); see `occtool.visualize.maps`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from occtool.errors import ConfigError, DataError
from occtool.progress import ProgressFn
from occtool.visualize.config import PairConfig
from occtool.visualize.maps import VisualResult, load_face
from occtool.visualize.pick import PairSpec, pairs_from_eval, read_pairs_file


def _pairs(cfg: PairConfig) -> tuple[list[PairSpec], dict]:
    if cfg.probe is not None:
        return [PairSpec(Path(cfg.probe), Path(cfg.gallery))], {"source": "command line"}
    if cfg.pairs is not None:
        return read_pairs_file(Path(cfg.pairs)), {"source": str(cfg.pairs)}
    if cfg.from_eval is not None:
        specs, method = pairs_from_eval(Path(cfg.from_eval), worst=cfg.worst, method=cfg.method)
        return specs, {"source": str(cfg.from_eval), "picked_by": method, "worst": cfg.worst}
    raise ConfigError("give PROBE GALLERY, --pairs FILE or --from-eval RUN")


def _check_images(paths) -> None:
    """Fail before the model is loaded: every image must exist and decode (a few, small)."""
    from occtool.data.images import read_image_rgb

    for p in sorted(paths):
        read_image_rgb(p)  # DataError: image not found / does not decode


def pair_scores(em, feats, i: int, j: int, *, views: int, bias) -> dict[str, float]:
    """Every available method's score for images i (probe) and j (gallery) of `feats`."""
    from occtool.matching.visibility_matched import VisibilityMatchedScorer

    out = {"cosine": float(feats.embeddings[i] @ feats.embeddings[j])}
    if feats.occ_embeddings is not None:
        out["cosine_occ"] = float(feats.occ_embeddings[i] @ feats.occ_embeddings[j])
    if feats.contributions is not None:
        c = torch.as_tensor(np.asarray(feats.contributions[[i, j]]))
        v = feats.visibility_views[[i, j]]
        out["cosine_occ_matched"] = float(VisibilityMatchedScorer(bias=bias, views=views,
                                                                  visibility_exponent=em.visibility_exponent)
                                          .pair_scores(c[:1], c[1:], v[:1], v[1:])[0])
    if em.matcher is not None and feats.match_maps is not None:
        maps = torch.as_tensor(np.asarray(feats.match_maps[[i, j]]))
        out["qaconv"] = float(em.matcher.score(maps[:1], maps[1:])[0, 0])
        if feats.occlusion is not None:
            occ = feats.occlusion[[i, j]]
            out["qaconv_occ"] = float(em.matcher.score(maps[:1], maps[1:], occ[:1], occ[1:])[0, 0])
    return out


def run_pairs(cfg: PairConfig, *, progress: ProgressFn = None) -> VisualResult:
    from occtool.device import resolve_device
    from occtool.evaluation import extract_features, load_eval_model
    from occtool.matching.visibility_matched import output_layer_bias

    if cfg.checkpoint is None:
        raise ConfigError("--checkpoint FILE is needed (an occtool checkpoint with an occlusion head)")
    specs, source = _pairs(cfg)
    _check_images({p for s in specs for p in (s.probe, s.gallery)})
    em = load_eval_model(checkpoint=cfg.checkpoint)
    uniq: dict[Path, int] = {}
    for s in specs:
        uniq.setdefault(s.probe, len(uniq))
        uniq.setdefault(s.gallery, len(uniq))
    feats = extract_features(list(uniq), model=em.model, device=resolve_device(cfg.device), batch_size=cfg.batch_size,
                             flip=cfg.flip, with_maps=True, max_bad=cfg.max_bad, progress=progress,
                             with_contributions=em.output_layer_affine)
    views = 2 if cfg.flip else 1
    bias = output_layer_bias(em.model.backbone.eval(), device="cpu").cpu()
    rows, figures = [], []
    for n, s in enumerate(specs):
        i, j = uniq[s.probe], uniq[s.gallery]
        if not (feats.ok_mask[i] and feats.ok_mask[j]):
            raise DataError(f"image does not decode: {s.probe if not feats.ok_mask[i] else s.gallery}")
        scores = pair_scores(em, feats, i, j, views=views, bias=bias)
        explained = _explain(feats, i, j, k=cfg.top_k, views=views, bias=bias, exponent=em.visibility_exponent)
        rows.append({"pair": n, "kind": s.kind, "probe": str(s.probe), "gallery": str(s.gallery), "note": s.note,
                     **{k: round(v, 6) for k, v in scores.items()}, **explained["summary"]})
        if n < cfg.max_panels:
            figures.append((f"pairs/{n:03d}_{Path(s.probe).stem}__{Path(s.gallery).stem}.png",
                            _builder(s, feats, i, j, scores, explained)))
    metrics = {"model": em.info, "pairs": len(specs), **source, "flip": cfg.flip, "top_k": cfg.top_k,
               "methods": list(scores),
               "mean_scores": {m: float(np.mean([r[m] for r in rows])) for m in scores},
               "per_pair": rows}
    return VisualResult(metrics=metrics, rows=rows, figures=figures)


def _explain(feats, i, j, *, k, views, bias, exponent: float) -> dict:
    from occtool.visualize.correspondence import matched_contributions, qaconv_correspondences

    maps = torch.as_tensor(np.asarray(feats.match_maps[[i, j]]))
    vis = feats.occlusion[[i, j], 0] if feats.occlusion is not None else None
    weighted = qaconv_correspondences(maps[0], maps[1], vis[0], vis[1], k=k) if vis is not None else None
    plain = qaconv_correspondences(maps[0], maps[1], k=k)
    matched = None
    if feats.contributions is not None:
        c = np.asarray(feats.contributions[[i, j]])
        v = feats.visibility_views[[i, j]].numpy()
        matched = matched_contributions(c[0], c[1], v[0], v[1], bias=bias, views=views, size_hw=tuple(maps.shape[2:]),
                                        visibility_exponent=exponent)
    summary = {"probe_mean_visibility": round(float(vis[0].mean()), 6) if vis is not None else "",
               "gallery_mean_visibility": round(float(vis[1].mean()), 6) if vis is not None else ""}
    if matched is not None:
        summary["matched_location_share"] = round(float(matched.per_location.sum()), 6)
        summary["matched_bias_share"] = round(matched.bias_share, 6)
    return {"weighted": weighted, "plain": plain, "matched": matched, "vis": vis, "summary": summary}


def _builder(s: PairSpec, feats, i, j, scores, ex):
    def build():
        from occtool.visualize.pair_figure import pair_figure

        hw = (112, 112)
        vis = ex["vis"]
        return pair_figure(load_face(s.probe, hw), load_face(s.gallery, hw),
                           vis_p=vis[0].numpy() if vis is not None else None,
                           vis_g=vis[1].numpy() if vis is not None else None,
                           corr_weighted=ex["weighted"], corr_plain=ex["plain"], matched=ex["matched"],
                           scores=scores, names=(Path(s.probe).name, Path(s.gallery).name),
                           title=f"{s.kind}: {s.note}" if s.kind else s.note)
    return build
