"""`occtool align SRC --out DST`: detect (RetinaFace), align to the 5-point template, write the tree."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from occtool.cli.common import ConfigOption, DeviceOption, ForceOption, SetOption, build_config, info, progress_bar


def align(
    src: Path = typer.Argument(..., help="Identity tree of raw photos: SRC/<identity>/<image>."),
    out: Path = typer.Option(..., "--out", help="Output folder: the same identity tree of aligned crops."),
    all_faces: bool = typer.Option(False, "--all", help="Write every face as <stem>_<k>.<ext> (default: the face closest to the centre)."),
    fallback: Optional[str] = typer.Option(None, "--fallback", help="No face found: skip (default) or center (centre crop, score 0)."),
    size: Optional[int] = typer.Option(None, "--size", help="Output crop side in pixels (default 112)."),
    image_format: Optional[str] = typer.Option(None, "--format", help="jpg (quality 95, default) or png."),
    score_threshold: Optional[float] = typer.Option(
        None, "--score-threshold", help="Detection score threshold, in [0, 1] (default 0.5)."),
    max_side: Optional[int] = typer.Option(None, "--max-side", help="Downscale larger images for detection (default 1024; 0 = never)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Workers (default 2): threads sharing one detector with ONNX Runtime, processes with PyTorch."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="RetinaFace MobileNet-0.25 state dict (default: shared weights)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="RetinaFace runtime: torch, onnxruntime or auto (default: ONNX Runtime on the CPU when the network exports and agrees with PyTorch)."),
    device: str = DeviceOption,
    config: Optional[Path] = ConfigOption,
    sets: Optional[list[str]] = SetOption,
    force: bool = ForceOption,
) -> None:
    """Detect faces and align them to the 112x112 five-point template (landmarks.csv, metrics.json)."""
    from occtool.align.tree import AlignConfig, align_tree, check_arguments
    from occtool.io import output_folder

    options = {
        "select": "all" if all_faces else None,
        "fallback": fallback,
        "size": [size, size] if size is not None else None,
        "image_format": image_format,
        "score_threshold": score_threshold,
        "max_side": max_side,
        "workers": workers,
        "weights": str(weights) if weights is not None else None,
        "device": device if device != "auto" else None,  # auto: the config's (default auto)
        "runtime": runtime,
    }
    cfg = build_config(AlignConfig, config, sets, options)
    check_arguments(Path(src), Path(out), cfg)
    with output_folder(out, command="align", force=force) as folder, progress_bar("align") as update:
        summary = align_tree(src, folder.path, cfg, progress=update)
    out_dir = folder.path
    m = summary.metrics
    info(
        f"{m['images']} images: face found in {m['faces_found']} ({100 * m['face_found_rate']:.2f}% of readable), "
        f"no face {m['no_face']}, several faces {m['multi_face']}, unreadable {m['unreadable']}; "
        f"{m['images_per_s']} images/s -> {out_dir}"
    )
