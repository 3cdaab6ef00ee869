"""`visualize-occlusion maps` as a library call: predicted visibility of many faces, measured
against ground truth when there is some, summarised per face region, and the figures to draw.

`run_maps(cfg)` returns a `VisualResult`: metrics (JSON-able), one row per face (CSV) and the
figures as (relative file name, builder) pairs; the caller builds, saves and closes each one
(`occtool.visualize.save_figure`), so only one figure lives at a time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from occtool.errors import ConfigError, DataError
from occtool.progress import ProgressFn
from occtool.visualize.config import MapsConfig
from occtool.visualize.inputs import MapInput, attach_ground_truth, collect_images, read_gt
from occtool.visualize.regions import REGION_NAMES, OCCLUDED_BELOW, region_summary, region_visibility, worst_order

Builder = Callable[[], object]  # -> matplotlib Figure


@dataclass
class VisualResult:
    metrics: dict
    rows: list[dict]
    figures: list[tuple[str, Builder]] = field(default_factory=list)


def load_face(path: Path, size_hw: tuple[int, int]) -> np.ndarray:
    from occtool.data.images import read_image_rgb
    from occtool.models import resize_to

    return resize_to(read_image_rgb(path), size_hw)


def _gt_block(pred: np.ndarray, gt: np.ndarray) -> dict:
    from occtool.evaluation.metrics import occlusion_iou, occlusion_mae

    iou, n_iou = occlusion_iou(pred, gt)
    return {"images": int(len(pred)), "iou@0.5": iou if n_iou else None, "iou_images": n_iou,
            "mae": occlusion_mae(pred, gt), "mean_predicted": float(pred.mean()), "mean_true": float(gt.mean()),
            "regions_true": region_summary(gt)}  # what a perfect map would give, beside `regions`


def _groups(inputs: list[MapInput], cfg: MapsConfig) -> list[str] | None:
    mode = cfg.group_by if cfg.group_by != "auto" else ("occluder" if cfg.manifests else "none")
    if mode == "none":
        return None
    if mode == "occluder":
        return [i.occluder or "(not in manifest)" for i in inputs]
    return [i.record.identity or "." for i in inputs]


def _sheet_indices(order: np.ndarray, groups: list[str] | None, limit: int) -> list[int]:
    """An even sample of at most `limit` of `order`, then grouped (stable within a group)."""
    if len(order) > limit:
        order = order[np.linspace(0, len(order) - 1, limit).round().astype(int)]
    idx = list(order)
    if groups is not None:
        idx.sort(key=lambda i: groups[i])  # stable: keeps the visibility order inside a group
    return idx


def _check_worst(cfg: MapsConfig, n_faces: int, all_have_truth: bool) -> None:
    if cfg.worst > n_faces:
        raise ConfigError(f"--worst {cfg.worst}: only {n_faces} faces were read")
    if cfg.worst and not all_have_truth and cfg.expect is None:
        raise ConfigError("--worst without ground truth for every face needs --expect occluded|visible "
                          "(what the region should read as)")


def run_maps(cfg: MapsConfig, *, progress: ProgressFn = None) -> VisualResult:
    from occtool.evaluation import extract_features, load_eval_model

    if cfg.checkpoint is None:
        raise ConfigError("--checkpoint FILE is needed (an occtool checkpoint with an occlusion head)")
    inputs = attach_ground_truth(collect_images([Path(p) for p in cfg.images]),
                                 masks=Path(cfg.masks) if cfg.masks else None,
                                 manifests=[Path(m) for m in cfg.manifests])
    _check_worst(cfg, len(inputs), all(i.mask is not None for i in inputs))  # before the slow part
    em = load_eval_model(checkpoint=cfg.checkpoint)
    from occtool.device import resolve_device

    feats = extract_features([i.record for i in inputs], model=em.model, device=resolve_device(cfg.device),
                             batch_size=cfg.batch_size, flip=False, with_maps=False, max_bad=cfg.max_bad,
                             progress=progress)
    ok = np.nonzero(feats.ok_mask)[0]
    if ok.size == 0:
        raise DataError("no image could be read")
    inputs = [inputs[i] for i in ok]
    pred = feats.occlusion.numpy()[ok, 0]  # [N, h, w]
    _check_worst(cfg, len(inputs), True)
    map_hw = pred.shape[1:]
    gts = [read_gt(i.mask, map_hw) if i.mask is not None else None for i in inputs]
    has_gt = np.array([g is not None for g in gts])
    gt_cells = np.stack([g[1] for g in gts if g is not None]) if has_gt.any() else None
    groups = _groups(inputs, cfg)
    rows = _rows(inputs, pred, gts, groups)
    metrics = _metrics(cfg, em, feats, inputs, pred, gt_cells, has_gt, groups)
    order = np.argsort([r["mean_visibility"] for r in rows], kind="stable")
    worst = None
    if cfg.worst:
        full_gt = np.stack([g[1] for g in gts]) if has_gt.all() else None
        worst = worst_order(pred, region=cfg.region, gt=full_gt, expect=None if full_gt is not None else cfg.expect)
        worst = worst[: cfg.worst]
        metrics["worst"] = {"region": cfg.region, "by": "ground truth error" if full_gt is not None else
                            f"expected {cfg.expect}", "faces": [rows[i] for i in worst]}
    figures = _figures(cfg, inputs, pred, gts, groups, order, worst, rows)
    return VisualResult(metrics=metrics, rows=rows, figures=figures)


def _rows(inputs, pred, gts, groups) -> list[dict]:
    regions = {n: region_visibility(pred, n) for n in REGION_NAMES}
    rows = []
    for j, inp in enumerate(inputs):
        row = {"image": str(inp.record.relpath), "path": str(inp.record.path),
               "group": groups[j] if groups else "", "occluder": inp.occluder or "",
               "mean_visibility": round(float(pred[j].mean()), 6)}
        row.update({f"{n}_visibility": round(float(regions[n][j]), 6) for n in REGION_NAMES if n != "all"})
        g = gts[j]
        row["true_mean_visibility"] = round(float(g[1].mean()), 6) if g is not None else ""
        row["mae"] = round(float(np.abs(pred[j] - g[1]).mean()), 6) if g is not None else ""
        rows.append(row)
    return rows


def _metrics(cfg, em, feats, inputs, pred, gt_cells, has_gt, groups) -> dict:
    m: dict = {
        "model": em.info,
        "counts": {"images": len(feats.paths), "images_read": len(inputs), "bad_images": feats.n_bad,
                   "bad_examples": feats.errors[:10], "images_resized": feats.n_resized,
                   "with_ground_truth": int(has_gt.sum())},
        "map_size": list(pred.shape[1:]),
        "regions": {"rows": {"eyes": "1-2 (y 16-47 of 112)", "nose": "3 (y 48-63: the template's eye line, y 52)",
                             "lower": "4-6 (y 64-111)", "all": "0-6"},
                    "occluded_below": OCCLUDED_BELOW, **region_summary(pred)},
        "definitions": "IoU of the occluded cells (visibility < 0.5) and MAE of the visibility, as train's "
                       "validation (occtool.evaluation.metrics); regions: rows of the 7x7 map (0-based)",
    }
    if feats.n_resized:
        m["notes"] = [f"{feats.n_resized} image(s) were not of the model's input size and were resized: the maps "
                      "assume aligned faces (run occtool align first)"]
    if gt_cells is not None:
        m["ground_truth"] = _gt_block(pred[has_gt], gt_cells)
        if any(i.occluder for i in inputs):
            per = defaultdict(list)
            for k, j in enumerate(np.nonzero(has_gt)[0]):
                per[inputs[j].occluder or "(not in manifest)"].append((j, k))
            m["per_occluder"] = {occ: _gt_block(pred[[j for j, _ in jk]], gt_cells[[k for _, k in jk]])
                                 for occ, jk in sorted(per.items())}
    if groups is not None:
        per_group = defaultdict(list)
        for j, g in enumerate(groups):
            per_group[g].append(j)
        m["per_group"] = {g: {"images": len(ix), **region_summary(pred[ix])} for g, ix in sorted(per_group.items())}
    return m


def _figures(cfg, inputs, pred, gts, groups, order, worst, rows) -> list[tuple[str, Builder]]:
    from occtool.visualize.figures import FaceMaps, contact_sheet, maps_panel

    tile = (cfg.tile_size, cfg.tile_size)
    figs: list[tuple[str, Builder]] = []

    def sheet(idx, title, with_groups=True, label=lambda j: f"{pred[j].mean():.2f}"):
        def build():
            return contact_sheet([load_face(inputs[j].record.path, tile) for j in idx], [pred[j] for j in idx],
                                 [label(j) for j in idx], groups=[groups[j] for j in idx] if groups and with_groups
                                 else None, columns=cfg.sheet_columns, title=title)
        return build

    idx = _sheet_indices(order, groups, cfg.sheet_max)
    figs.append(("contact_sheet.png", sheet(idx, f"{len(idx)} of {len(inputs)} faces, mean predicted visibility, "
                                                 "least visible first")))
    if worst is not None:
        reg = region_visibility(pred, cfg.region)
        err = {j: rows[j]["mae"] for j in worst}  # "" without ground truth
        figs.append((f"worst_{cfg.region}.png",
                     sheet(list(worst), f"{len(worst)} worst faces in region {cfg.region} (label: region visibility"
                           f"{', whole-map error' if err[worst[0]] != '' else ''})", with_groups=False,
                           label=lambda j: f"{reg[j]:.2f}" + (f" e{err[j]:.2f}" if err[j] != "" else ""))))
    panel_idx = list(worst) if worst is not None else list(range(len(inputs)))
    for n, j in enumerate(panel_idx[: cfg.max_panels]):
        def build(j=j):
            img = load_face(inputs[j].record.path, _hw(gts, j))
            g = gts[j]
            return maps_panel([FaceMaps(image=img, pred=pred[j], name=rows[j]["image"],
                                        gt_full=g[0] if g is not None else None,
                                        gt_cells=g[1] if g is not None else None,
                                        note=inputs[j].occluder or "")])
        figs.append((f"panels/{n:04d}_{Path(rows[j]['image']).stem.replace(' ', '_')}.png", build))
    return figs


def _hw(gts, j) -> tuple[int, int]:
    """Panel face size: the ground-truth mask's when there is one, else 112 x 112."""
    g = gts[j]
    return tuple(g[0].shape) if g is not None else (112, 112)
