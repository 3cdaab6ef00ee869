"""`occtool visualize-occlusion maps|pair`: what the model believes is visible, and why two faces
match. Thin adapters over `occtool.visualize` (no torch at import time)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from occtool.cli.common import ConfigOption, DeviceOption, ForceOption, SetOption, build_config, info, progress_bar

app = typer.Typer(
    help="Figures of predicted visibility (maps) and of why two faces match (pair).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _write(out: Path, cfg, result, csv_name: str) -> int:
    """config.yaml, metrics.json, the CSV and every figure (built, saved and closed one by one)."""
    from occtool.errors import OcctoolError
    from occtool.evaluation.report import write_scores_csv
    from occtool.io import atomic_write_json, write_config
    from occtool.visualize import save_figure

    try:
        write_config(out, cfg)
        write_scores_csv(out / csv_name, result.rows)
        with progress_bar("figures") as progress:
            for n, (name, build) in enumerate(result.figures):
                save_figure(build(), out / name, dpi=cfg.dpi)
                progress(n + 1, len(result.figures))
        atomic_write_json(out / "metrics.json", _json_safe(result.metrics))
    except OSError as exc:
        raise OcctoolError(f"cannot write into {out}: {exc.strerror or exc}") from None
    return len(result.figures)


def _json_safe(obj):
    from occtool.evaluation.report import _json_safe as safe

    return safe(obj)


@app.command("maps")
def maps(
    images: Optional[list[Path]] = typer.Argument(None, help="Image files and/or folders (any depth: identity tree or flat)."),
    images_opt: Optional[list[Path]] = typer.Option(None, "--images", help="More image files or folders (repeatable)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="occtool checkpoint (with its occlusion head)."),
    out: Path = typer.Option(..., "--out", help="Output folder: contact_sheet.png, panels/, maps.csv, metrics.json."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Ground-truth masks mirroring the images (.png, 255 = visible)."),
    manifest: Optional[list[Path]] = typer.Option(None, "--manifest", help="augment's manifest.jsonl: occluder types (and masks); repeatable."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Contact sheet and stats groups: auto, none, folder, occluder."),
    worst: Optional[int] = typer.Option(None, "--worst", help="Also a contact sheet of the N worst faces in --region."),
    region: Optional[str] = typer.Option(None, "--region", help="eyes (rows 1-2), nose (row 3), lower (rows 4-6) or all [lower]."),
    expect: Optional[str] = typer.Option(None, "--expect", help="Without ground truth: what --region should be (occluded or visible)."),
    max_panels: Optional[int] = typer.Option(None, "--max-panels", help="Per-face panels drawn [64]."),
    sheet_max: Optional[int] = typer.Option(None, "--sheet-max", help="Faces on the contact sheet [240]."),
    columns: Optional[int] = typer.Option(None, "--columns", help="Contact sheet columns [12]."),
    tile_size: Optional[int] = typer.Option(None, "--tile-size", help="Pixels per face on the contact sheets [96]."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per forward pass [64]."),
    max_bad: Optional[int] = typer.Option(None, "--max-bad", help="Fail when more images than this do not decode [0]."),
    dpi: Optional[int] = typer.Option(None, "--dpi", help="Figure resolution (default: 90-100 per figure)."),
    device: str = DeviceOption,
    config: Optional[Path] = ConfigOption,
    set_: Optional[list[str]] = SetOption,
    force: bool = ForceOption,
) -> None:
    """Predicted visibility of many faces: panels, contact sheets, region statistics, IoU/MAE vs truth."""
    from occtool.visualize import MapsConfig, run_maps

    paths = [str(p) for p in [*(images or []), *(images_opt or [])]]
    options = {"checkpoint": str(checkpoint) if checkpoint else None, "images": paths or None,
               "masks": str(masks) if masks else None, "manifests": [str(m) for m in manifest] if manifest else None,
               "group_by": group_by, "worst": worst, "region": region, "expect": expect, "max_panels": max_panels,
               "sheet_max": sheet_max, "sheet_columns": columns, "tile_size": tile_size, "batch_size": batch_size, "max_bad": max_bad, "dpi": dpi,
               "device": device if device != "auto" else None}
    cfg = build_config(MapsConfig, config, set_, options)
    from occtool.io import output_folder

    with output_folder(out, command="visualize-occlusion maps", force=force) as folder:
        with progress_bar("maps") as progress:
            result = run_maps(cfg, progress=progress)
        n_fig = _write(folder.path, cfg, result, "maps.csv")
    out_dir = folder.path
    m = result.metrics
    regions = ", ".join(f"{r} {m['regions'][r]['mean_visibility']:.2f} ({100 * m['regions'][r]['occluded_fraction']:.0f}% occluded)"
                        for r in ("eyes", "nose", "lower"))
    info(f"{m['counts']['images_read']} faces: mean visibility {regions}")
    if "ground_truth" in m:
        g = m["ground_truth"]
        iou = "n/a" if g["iou@0.5"] is None else f"{g['iou@0.5']:.3f}"
        info(f"against ground truth ({g['images']} faces): IoU@0.5 {iou}, MAE {g['mae']:.3f}")
    for note in m.get("notes", []):
        info(f"[yellow]note: {note}[/yellow]")
    info(f"wrote {n_fig} figures, maps.csv and metrics.json -> {out_dir}")


@app.command("pair")
def pair(
    probe: Optional[Path] = typer.Argument(None, help="Probe image."),
    gallery: Optional[Path] = typer.Argument(None, help="Gallery image."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="occtool checkpoint."),
    out: Path = typer.Option(..., "--out", help="Output folder: pairs/*.png, pairs.csv, metrics.json."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="File of pairs: 'probe gallery' per line."),
    from_eval: Optional[Path] = typer.Option(None, "--from-eval", help="eval-gallery output folder: draw its hardest cases."),
    worst: Optional[int] = typer.Option(None, "--worst", help="With --from-eval: N false matches and N misses [5]."),
    method: Optional[str] = typer.Option(None, "--method", help="With --from-eval: the method whose scores pick the pairs."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="QAConv correspondences drawn [10]."),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="Flip test-time augmentation, as eval-gallery [on]."),
    max_panels: Optional[int] = typer.Option(None, "--max-panels", help="Pair figures drawn [64]."),
    dpi: Optional[int] = typer.Option(None, "--dpi", help="Figure resolution (default: 90-100 per figure)."),
    device: str = DeviceOption,
    config: Optional[Path] = ConfigOption,
    set_: Optional[list[str]] = SetOption,
    force: bool = ForceOption,
) -> None:
    """Two faces side by side: visibility, QAConv correspondences, per-location contributions, all scores."""
    from occtool.visualize import PairConfig, run_pairs

    options = {"checkpoint": str(checkpoint) if checkpoint else None, "probe": str(probe) if probe else None,
               "gallery": str(gallery) if gallery else None, "pairs": str(pairs) if pairs else None,
               "from_eval": str(from_eval) if from_eval else None, "worst": worst, "method": method,
               "top_k": top_k, "flip": flip, "max_panels": max_panels, "dpi": dpi,
               "device": device if device != "auto" else None}
    cfg = build_config(PairConfig, config, set_, options)
    from occtool.io import output_folder

    with output_folder(out, command="visualize-occlusion pair", force=force) as folder:
        with progress_bar("pairs") as progress:
            result = run_pairs(cfg, progress=progress)
        n_fig = _write(folder.path, cfg, result, "pairs.csv")
    out_dir = folder.path
    for r in result.rows[:10]:
        scores = ", ".join(f"{k} {r[k]:.3f}" for k in result.metrics["mean_scores"])
        info(f"{Path(r['probe']).name} vs {Path(r['gallery']).name}{' (' + r['kind'] + ')' if r['kind'] else ''}: {scores}")
    info(f"wrote {n_fig} pair figures, pairs.csv and metrics.json -> {out_dir}")
