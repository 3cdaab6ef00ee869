"""`occtool export`: the face model as an ONNX graph (dynamic batch), checked against PyTorch.
A thin adapter over `occtool.runtime.exporting` (no torch at import time)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from occtool.cli.common import ForceOption, info


def export(
    out: Path = typer.Option(..., "--out", help="The .onnx file to write (and <out>.json: names, opset, check)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Pretrained backbone name (e.g. mobilefacenet)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Backbone weights file (default: the shared weights of the backbone)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="occtool checkpoint (model + occlusion head)."),
    check_root: Optional[Path] = typer.Option(None, "--check-root", help="Identity tree of real faces to check the graph on (default: random inputs)."),
    check_images: int = typer.Option(16, "--check-images", min=1, help="Faces from --check-root to check on (with their mirrors)."),
    force: bool = ForceOption,
) -> None:
    """Export a backbone or an occtool checkpoint to ONNX; every output is checked against PyTorch (max abs diff < 1e-4)."""
    from occtool.runtime.exporting import run_export

    rep = run_export(out=out, backbone=backbone, weights=weights, checkpoint=checkpoint, check_root=check_root,
                     check_images=check_images, force=force)
    worst = max(rep["max_abs_diff"].values())
    info(f"{rep['kind']} {rep['backbone']} -> {out} (opset {rep['opset']}, input {rep['input']['name']} "
         f"{rep['input']['shape']}, outputs {', '.join(rep['outputs'])})")
    info(f"checked on {rep['checked_on']}: max abs diff {worst:.2e} (limit {rep['tol']:g}); wrote {out}.json")
