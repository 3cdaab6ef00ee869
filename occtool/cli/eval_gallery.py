"""`occtool eval-gallery`: gallery/probe identification or LFW-pairs verification, every scoring
method side by side. A thin adapter over `occtool.evaluation.eval_gallery` (no torch at import time)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from occtool.cli.common import ConfigOption, DeviceOption, ForceOption, SetOption, build_config, info, out_console, progress_bar


def eval_gallery(
    out: Path = typer.Option(..., "--out", help="Output folder (metrics.json, scores.csv, plots, config.yaml)."),
    gallery_root: Optional[Path] = typer.Option(None, "--gallery-root", help="Gallery identity tree root/<id>/<image>."),
    probe_root: Optional[Path] = typer.Option(None, "--probe-root", help="Probe identity tree root/<id>/<image>."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="LFW-style pairs.txt (pairs mode, with --root)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Image tree of the pairs (root/<name>/<name>_NNNN.*, or root/images/...)."),
    root_b: Optional[Path] = typer.Option(None, "--root-b", help="Read the second image of every pair from this tree (e.g. an occluded copy)."),
    folds_of: Optional[int] = typer.Option(None, "--folds-of", help="Folds for a plain-list pairs file (no header; balanced same/different per fold) [10]."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Pretrained backbone name (e.g. mobilefacenet)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Backbone weights file (default: the shared weights of the backbone)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="occtool checkpoint (model + occlusion head + QAConv head)."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma list of: cosine, cosine_occ, cosine_occ_matched, qaconv, qaconv_occ, fused, fused_matched (default: all available but the fused ones)."),
    fusion_weight: Optional[float] = typer.Option(None, "--fusion-weight", help="QAConv weight w of fused / fused_matched = z(cosine part) + w * z(QAConv) (default 1; choose it on validation people)."),
    visibility_exponent: Optional[float] = typer.Option(None, "--vis-exponent", help="cosine_occ_matched weighs each location by v**exponent of the predicted visibility v (default 0.5, chosen on validation people; 1: the visibilities themselves)."),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="Flip test-time augmentation for embeddings (default on)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Also report accuracy, TAR and FAR at this fixed score threshold (in each method's score units: cosine similarity for cosine)."),
    max_bad: Optional[int] = typer.Option(None, "--max-bad", help="Fail when more images than this fail to load (default 0)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per forward pass (default 64)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Feature cache folder (default $OCCTOOL_CACHE or ~/.cache/occtool/features)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the feature cache."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="Extraction runtime: torch, onnxruntime or auto (default: ONNX Runtime on the CPU when the model exports and agrees with PyTorch to 1e-4, else PyTorch)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime intra-op threads (default OMP_NUM_THREADS, else the cores given)."),
    shortlist_k: Optional[int] = typer.Option(None, "--shortlist-k", help="QAConv re-ranks the cosine top-k (0: score the whole gallery; default auto)."),
    device: str = DeviceOption,
    config: Optional[Path] = ConfigOption,
    set_: Optional[list[str]] = SetOption,
    force: bool = ForceOption,
) -> None:
    """Evaluate a model on a gallery/probe split (identification) or on LFW-style pairs."""
    options = {
        "gallery_root": gallery_root, "probe_root": probe_root, "pairs": pairs, "root": root, "root_b": root_b, "folds_of": folds_of,
        "backbone": backbone, "weights": weights, "checkpoint": checkpoint,
        "methods": [m.strip() for m in methods.split(",") if m.strip()] if methods else None,
        "flip": flip, "fusion_weight": fusion_weight, "visibility_exponent": visibility_exponent, "threshold": threshold, "max_bad": max_bad, "batch_size": batch_size,
        "cache_dir": cache_dir, "cache": False if no_cache else None, "shortlist_k": shortlist_k,
        "device": device if device != "auto" else None, "runtime": runtime, "threads": threads,
    }
    from occtool.evaluation.eval_gallery import EvalGalleryConfig, run_eval_gallery

    cfg = build_config(EvalGalleryConfig, config, set_, options)
    result = run_eval_gallery(cfg, out, force=force, progress=progress_bar)
    print_table(result["metrics"])
    info(f"wrote {out}/metrics.json, scores.csv, plots and config.yaml")


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def print_table(metrics: dict) -> None:
    from rich.table import Table

    mode = metrics["mode"]
    c = metrics["counts"]
    if mode == "identification":
        title = (f"identification: {c['probes_with_gallery_identity']} probes vs {c['gallery_identities']} "
                 f"gallery identities ({c['bad_images']} bad images)")
        cols = [("rank-1 %", "rank1"), ("rank-5 %", "rank5"), ("TAR@1e-3 %", "tar@far=1e-3"),
                ("TAR@1e-2 %", "tar@far=1e-2"), ("EER %", "eer"), ("AUC", "auc")]
    else:
        title = f"pairs: {c['pairs_used']} pairs in {c['folds']} folds ({c['bad_images']} bad images)"
        cols = [(f"acc {c['folds']}-fold %", "acc_10fold"), ("± std", "acc_10fold_std"), ("TAR@1e-3 %", "tar@far=1e-3"),
                ("EER %", "eer"), ("AUC", "auc")]
    if any("acc@threshold" in m for m in metrics["methods"].values()):
        cols.append(("acc@thr %", "acc@threshold"))
    table = Table(title=title)
    table.add_column("method", no_wrap=True, min_width=max(map(len, metrics["methods"]), default=6))
    for name, _ in cols:
        table.add_column(name, justify="right")
    for method, m in metrics["methods"].items():
        cells = []
        for _, key in cols:
            v = m.get(key)
            cells.append("-" if v is None else (f"{v:.4f}" if key == "auc" else _pct(v)))
        table.add_row(method, *cells)
    out_console.print(table)
    for note in metrics.get("notes", []):
        info(f"note: {note}")
    missing = metrics.get("overlap", {}).get("probe_identities_missing_from_gallery")
    if missing:
        info(f"note: {missing} probe identities are not in the gallery "
             f"({metrics['overlap']['probes_of_missing_identities']} probes; counted as impostors only)")
