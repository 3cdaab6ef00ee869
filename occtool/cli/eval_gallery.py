"""`occtool eval-gallery`: gallery/probe identification or LFW-pairs verification, every scoring
method side by side. A thin adapter over `occtool.evaluation.run` (no torch at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer

from occtool.cli.common import ConfigOption, DeviceOption, ForceOption, SetOption, build_config, info, out_console, progress_bar


@dataclass
class EvalGalleryConfig:
    # identification mode
    gallery_root: Optional[Path] = None
    probe_root: Optional[Path] = None
    # pairs mode
    pairs: Optional[Path] = None
    root: Optional[Path] = None
    root_b: Optional[Path] = None
    # model: a pretrained backbone, or an occtool checkpoint
    backbone: Optional[str] = None
    weights: Optional[Path] = None
    checkpoint: Optional[Path] = None
    # scoring
    methods: list[str] = field(default_factory=lambda: ["auto"])
    flip: bool = True
    threshold: Optional[float] = None
    fars: list[float] = field(default_factory=lambda: [1e-3, 1e-2])
    shortlist_k: Optional[int] = None  # None: auto (cosine top-100 shortlist above 10,000 gallery images)
    max_impostors: int = 50_000_000  # above this many impostor pairs, a uniform sample is scored
    # running
    max_bad: int = 0
    batch_size: int = 64
    device: str = "auto"
    cache_dir: Optional[Path] = None  # None: $OCCTOOL_CACHE or ~/.cache/occtool/features
    cache: bool = True


def default_cache_dir() -> Path:
    env = os.environ.get("OCCTOOL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "occtool" / "features"


def eval_gallery(
    out: Path = typer.Option(..., "--out", help="Output folder (metrics.json, scores.csv, plots, config.yaml)."),
    gallery_root: Optional[Path] = typer.Option(None, "--gallery-root", help="Gallery identity tree root/<id>/<image>."),
    probe_root: Optional[Path] = typer.Option(None, "--probe-root", help="Probe identity tree root/<id>/<image>."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="LFW-style pairs.txt (pairs mode, with --root)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Image tree of the pairs (root/<name>/<name>_NNNN.*, or root/images/...)."),
    root_b: Optional[Path] = typer.Option(None, "--root-b", help="Read the second image of every pair from this tree (e.g. an occluded copy)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Pretrained backbone name (e.g. mobilefacenet)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Backbone weights file (default: the shared weights of the backbone)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="occtool checkpoint (model + occlusion head + QAConv head)."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma list of cosine,cosine_occ,cosine_occ_matched,qaconv,qaconv_occ,fused (default: all available)."),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="Flip test-time augmentation for embeddings (default on)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Also report accuracy, TAR and FAR at this fixed score threshold (in each method's score units: cosine similarity for cosine)."),
    max_bad: Optional[int] = typer.Option(None, "--max-bad", help="Fail when more images than this fail to load (default 0)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per forward pass (default 64)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Feature cache folder (default $OCCTOOL_CACHE or ~/.cache/occtool/features)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the feature cache."),
    shortlist_k: Optional[int] = typer.Option(None, "--shortlist-k", help="QAConv re-ranks the cosine top-k (0: score the whole gallery; default auto)."),
    device: str = DeviceOption,
    config: Optional[Path] = ConfigOption,
    set_: Optional[list[str]] = SetOption,
    force: bool = ForceOption,
) -> None:
    """Evaluate a model on a gallery/probe split (identification) or on LFW-style pairs."""
    options = {
        "gallery_root": gallery_root, "probe_root": probe_root, "pairs": pairs, "root": root, "root_b": root_b,
        "backbone": backbone, "weights": weights, "checkpoint": checkpoint,
        "methods": [m.strip() for m in methods.split(",") if m.strip()] if methods else None,
        "flip": flip, "threshold": threshold, "max_bad": max_bad, "batch_size": batch_size,
        "cache_dir": cache_dir, "cache": False if no_cache else None, "shortlist_k": shortlist_k,
        "device": device if device != "auto" else None,
    }
    cfg = build_config(EvalGalleryConfig, config, set_, options)
    result = run_eval(cfg, out, force=force, progress=progress_bar)
    print_table(result["metrics"])
    info(f"wrote {out}/metrics.json, scores.csv, plots and config.yaml")


def run_eval(cfg: EvalGalleryConfig, out: Path, *, force: bool = False, progress=None) -> dict:
    """Validate the mode, run the evaluation, write every output. Returns the result dict."""
    from occtool.device import resolve_device
    from occtool.errors import ConfigError
    from occtool.evaluation.report import write_report
    from occtool.evaluation.run import evaluate_gallery, evaluate_pairs, load_eval_model
    from occtool.io import prepare_out_dir, write_config

    ident = cfg.gallery_root is not None or cfg.probe_root is not None
    pairs_mode = cfg.pairs is not None or cfg.root is not None or cfg.root_b is not None
    if ident and pairs_mode:
        raise ConfigError("choose one mode: --gallery-root/--probe-root, or --pairs/--root")
    if not ident and not pairs_mode:
        raise ConfigError("give --gallery-root G --probe-root P, or --pairs FILE --root DIR")
    if ident and (cfg.gallery_root is None or cfg.probe_root is None):
        raise ConfigError("identification mode needs both --gallery-root and --probe-root")
    if pairs_mode and (cfg.pairs is None or cfg.root is None):
        raise ConfigError("pairs mode needs both --pairs and --root")
    if cfg.max_bad < 0 or cfg.batch_size < 1:
        raise ConfigError("--max-bad must be >= 0 and --batch-size >= 1")

    device = resolve_device(cfg.device)
    em = load_eval_model(backbone=cfg.backbone, weights=cfg.weights, checkpoint=cfg.checkpoint)
    cache_dir = (cfg.cache_dir or default_cache_dir()) if cfg.cache else None
    methods = None if cfg.methods in ([], ["auto"]) else cfg.methods
    out = prepare_out_dir(out, force=force)
    common = dict(em=em, methods=methods, flip=cfg.flip, threshold=cfg.threshold, max_bad=cfg.max_bad,
                  batch_size=cfg.batch_size, device=device, cache_dir=cache_dir, fars=tuple(cfg.fars),
                  progress=progress)
    if ident:
        from occtool.data.images import list_identity_tree
        from occtool.errors import DataError

        try:
            gallery = list_identity_tree(cfg.gallery_root)
        except DataError as exc:
            raise DataError(f"gallery: {exc}") from None
        probes = list_identity_tree(cfg.probe_root)
        result = evaluate_gallery(gallery, probes, shortlist_k=cfg.shortlist_k, max_impostors=cfg.max_impostors, **common)
    else:
        result = evaluate_pairs(cfg.pairs, cfg.root, cfg.root_b, **common)
    result["metrics"]["device"] = str(device)
    result["metrics"]["cache_dir"] = str(cache_dir) if cache_dir else None
    write_config(out, cfg)
    write_report(out, result)
    return result


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
        cols = [("acc 10-fold %", "acc_10fold"), ("± std", "acc_10fold_std"), ("TAR@1e-3 %", "tar@far=1e-3"),
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
