"""What `occtool export` runs: load a model, export it, check it against PyTorch, write a report.

The check runs on real faces when `check_root` is given (the first `check_images` images of its
identity tree, and their mirrors), else on random inputs of the preprocessed range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from occtool.errors import DataError, OutputExistsError


def check_batch(spec, *, check_root: str | Path | None, check_images: int, seed: int = 0) -> tuple[torch.Tensor, str]:
    """A preprocessed batch [2N, 3, H, W] (images, then mirrors) to check an export on, and what it is."""
    from occtool.data.images import list_identity_tree, read_image_rgb
    from occtool.models import preprocess, resize_to

    if check_root is None:
        g = torch.Generator().manual_seed(seed)
        h, w = spec.size_hw
        return torch.rand((check_images, 3, h, w), generator=g) * 4 - 2, f"{check_images} random inputs in [-2, 2]"
    records = list_identity_tree(check_root)
    step = max(1, len(records) // check_images)  # spread over identities
    imgs = [resize_to(read_image_rgb(r.path), spec.size_hw) for r in records[::step][:check_images]]
    if not imgs:
        raise DataError(f"no images to check the export on under {check_root}")
    x = preprocess(np.stack(imgs), spec)
    return torch.cat([x, torch.flip(x, dims=[3])]), f"{len(imgs)} faces of {check_root} and their mirrors"


def run_export(*, out: str | Path, backbone: str | None = None, weights: str | Path | None = None,
               checkpoint: str | Path | None = None, check_root: str | Path | None = None, check_images: int = 16,
               force: bool = False, threads: int = 1) -> dict:
    """Export the model to `out` (.onnx) and `<out>.json` (names, opset, the check). Returns that report."""
    from occtool.evaluation import load_eval_model
    from occtool.io import atomic_write_json
    from occtool.models.export import DEFAULT_TOL, INPUT_NAME, OPSET, check_onnx, export_onnx, output_names

    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(f"{out} exists (use --force to overwrite)")
    em = load_eval_model(backbone=backbone, weights=weights, checkpoint=checkpoint)
    model = em.model.eval()
    spec = (model.backbone if hasattr(model, "backbone") else model).input_spec
    x, what = check_batch(spec, check_root=check_root, check_images=check_images)
    export_onnx(model, out)
    try:
        diffs = check_onnx(model, out, x, tol=DEFAULT_TOL, threads=threads)
    except Exception:
        out.unlink(missing_ok=True)  # a graph that disagrees is not left behind
        raise
    report = {"onnx": str(out), "source": em.source, "kind": em.kind, "backbone": em.backbone, "opset": OPSET,
              "input": {"name": INPUT_NAME, "shape": ["batch", 3, *spec.size_hw], "spec": spec.to_dict()},
              "outputs": list(output_names(model)), "checked_on": what, "tol": DEFAULT_TOL, "max_abs_diff": diffs}
    atomic_write_json(out.with_name(out.name + ".json"), report)
    return report
