"""The panel `train` can draw every epoch: a few fixed validation faces, their predicted
visibility and (when known) the truth, so a run's occlusion head can be watched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from occtool.errors import ShapeError


@torch.no_grad()
def predict_visibility(model, images: np.ndarray) -> np.ndarray:
    """A FaceModel's predicted visibility [N, H, W] for uint8 RGB faces [N, h, w, 3], in eval mode
    for the call only (the model's train/eval mode is restored; a DDP wrapper is unwrapped)."""
    from occtool.models import preprocess

    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[3] != 3 or imgs.dtype != np.uint8:
        raise ShapeError(f"images: expected uint8 [N, H, W, 3], got {imgs.dtype} {tuple(imgs.shape)}")
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        out = model(preprocess(imgs, model.backbone.input_spec, device=device))
    finally:
        model.train(was_training)
    return out.occlusion[:, 0].float().cpu().numpy()


def training_panel(model, images: np.ndarray, gt_visibility: np.ndarray | None = None, *, title: str = "",
                   names: list[str] | None = None):
    """Figure: one row per face (face | predicted visibility | truth | disagreement).

    images uint8 [N, H, W, 3]; gt_visibility None or [N, H', W'] in [0, 1] at full resolution (a
    mask) or on the map's grid. The model is any FaceModel (training or eval mode, any device)."""
    from occtool.augment import feature_mask
    from occtool.visualize.figures import FaceMaps, maps_panel

    pred = predict_visibility(model, images)
    faces = []
    for n, img in enumerate(np.asarray(images)):
        gt = None if gt_visibility is None else np.asarray(gt_visibility[n], dtype=np.float32)
        cells = None if gt is None else (gt if gt.shape == pred.shape[1:] else feature_mask(gt, pred.shape[1:]))
        faces.append(FaceMaps(image=img, pred=pred[n], name=names[n] if names else f"probe {n}",
                              gt_full=gt if gt is not None and gt.shape == img.shape[:2] else None, gt_cells=cells))
    return maps_panel(faces, title=title)


def save_training_panel(path: str | Path, model, images: np.ndarray, gt_visibility: np.ndarray | None = None, *,
                        title: str = "", names: list[str] | None = None) -> Path:
    """`training_panel` written atomically to `path` (PNG) and closed."""
    from occtool.visualize.figures import save_figure

    return save_figure(training_panel(model, images, gt_visibility, title=title, names=names), path)
