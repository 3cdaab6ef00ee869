"""Figure builders for occlusion maps (matplotlib, Agg): per-face panels and contact sheets.

Builders return a `matplotlib.figure.Figure` and never write; `save_figure` writes one
atomically and closes it (the CLI decides what is saved where).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occtool.io import atomic_save
from occtool.visualize.overlay import (
    ERR_CMAP,
    VIS_CMAP,
    colorize,
    heat_overlay,
    mosaic,
    sheet_layout,
    upsample_cells,
)

PANEL_DPI = 90
SHEET_DPI = 100


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, *, dpi: int | None = None) -> Path:
    """Write `fig` atomically (format from the suffix) and close it."""
    plt = pyplot()
    try:
        return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=dpi or fig.get_dpi()))
    finally:
        plt.close(fig)


def _colorbar(fig, ax, cmap: str, label: str) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cb = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap=cmap), ax=ax, fraction=0.046, pad=0.03)
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=6)


def _face_axis(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


@dataclass
class FaceMaps:
    """One face for a panel row: image uint8 [H, W, 3], predicted visibility [h, w], and optionally
    the true visibility at full resolution [H, W] and on the map's grid [h, w]."""

    image: np.ndarray
    pred: np.ndarray
    name: str = ""
    gt_full: np.ndarray | None = None
    gt_cells: np.ndarray | None = None
    note: str = ""


def _map_tiles(f: FaceMaps, with_gt: bool) -> tuple[list[np.ndarray], list[str]]:
    """The tiles of one panel row and their titles."""
    hw = f.image.shape[:2]
    tiles = [f.image, heat_overlay(f.image, f.pred)]
    titles = [f"{Path(f.name).name}\n{f.note}".strip() if f.name else f.note,
              f"predicted, mean {float(np.mean(f.pred)):.2f}"]
    if not with_gt:
        return tiles, titles
    gt = f.gt_full if f.gt_full is not None else f.gt_cells
    blank = np.full_like(f.image, 255)
    if gt is None:
        return tiles + [blank, blank], titles + ["no ground truth", ""]
    tiles.append(colorize(upsample_cells(gt, hw) if gt.shape != hw else gt))
    titles.append(f"ground truth, mean {float(np.mean(gt)):.2f}")
    if f.gt_cells is None:
        return tiles + [blank], titles + [""]
    err = np.abs(np.asarray(f.pred, np.float64) - f.gt_cells)
    tiles.append(colorize(upsample_cells(err, hw), ERR_CMAP))
    titles.append(f"|pred - true|, mean {err.mean():.2f}")
    return tiles, titles


def maps_panel(faces: list[FaceMaps], *, title: str = "", scale: int = 2) -> "matplotlib.figure.Figure":  # noqa: F821
    """One row per face: the face | predicted visibility overlay | ground truth (when any face
    has it) | |predicted - true| per map cell; colour bars on the right. Drawn as one image
    (tiles enlarged `scale` times by pixel repetition) so that many rows stay cheap."""
    plt = pyplot()
    with_gt = any(f.gt_full is not None or f.gt_cells is not None for f in faces)
    tiles, titles = [], []
    for f in faces:
        t, n = _map_tiles(f, with_gt)
        tiles.append([np.repeat(np.repeat(x, scale, 0), scale, 1) for x in t])
        titles.append(n)
    cols, th, tw = len(tiles[0]), tiles[0][0].shape[0], tiles[0][0].shape[1]
    pos, _, canvas_hw = sheet_layout([cols] * len(faces), columns=cols, tile_hw=(th, tw), label_h=26,
                                     header_h=0, gap=8)
    canvas = mosaic([t for row in tiles for t in row], pos, canvas_hw, label_h=26)
    title_h, bar_w = (24 if title else 0), 70 * (2 if with_gt else 1)
    W, H = canvas_hw[1] + bar_w, canvas_hw[0] + title_h
    fig = plt.figure(figsize=(W / PANEL_DPI, H / PANEL_DPI), dpi=PANEL_DPI)
    ax = fig.add_axes((0, 0, canvas_hw[1] / W, canvas_hw[0] / H))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for (y, x), text in zip(pos, [t for row in titles for t in row]):
        ax.text(x + 1, y + 24, text, fontsize=7, va="bottom")
    if title:
        fig.text(0.01, 1 - 0.5 * title_h / H, title, fontsize=9, va="center")
    bars = [(VIS_CMAP, "visibility (1 = visible)")] + ([(ERR_CMAP, "|pred - true|")] if with_gt else [])
    for n, (cmap, label) in enumerate(bars):
        cax = fig.add_axes(((canvas_hw[1] + 8 + 70 * n) / W, 0.5 - min(0.4, 180 / H), 12 / W, min(0.8, 360 / H)))
        _colorbar_in(fig, cax, cmap, label)
    return fig


def contact_sheet(images: list[np.ndarray], preds: list[np.ndarray], labels: list[str], *,
                  groups: list[str] | None = None, columns: int = 12, title: str = "") -> "matplotlib.figure.Figure":  # noqa: F821
    """Many faces with their predicted visibility blended on top, each labelled (e.g. with its
    mean visibility), drawn as one image at 1:1 pixels. `groups`: a group name per face (faces
    must come grouped); each group starts a new row under its name."""
    plt = pyplot()
    if not images:
        raise ValueError("contact_sheet: no faces")
    tile_hw = images[0].shape[:2]
    names, sizes = [], []
    for g in groups if groups is not None else [""] * len(images):
        if names and names[-1] == g:
            sizes[-1] += 1
        else:
            names.append(g)
            sizes.append(1)
    columns = max(1, min(columns, max(sizes)))
    header_h = 18 if groups is not None else 0
    pos, heads, canvas_hw = sheet_layout(sizes, columns=columns, tile_hw=tile_hw, header_h=header_h)
    canvas = mosaic([heat_overlay(im, p) for im, p in zip(images, preds)], pos, canvas_hw)
    title_h = 26 if title else 0
    w_in, h_in = canvas_hw[1] / SHEET_DPI, (canvas_hw[0] + title_h) / SHEET_DPI
    fig = plt.figure(figsize=(w_in + 0.9, h_in), dpi=SHEET_DPI)
    ax = fig.add_axes((0, 0, w_in / (w_in + 0.9), canvas_hw[0] / (canvas_hw[0] + title_h)))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for (y, x), text in zip(pos, labels):
        ax.text(x + 1, y + 11, text, fontsize=7, family="monospace")
    if groups is not None:
        for y, name, n in zip(heads, names, sizes):
            ax.text(4, y + 14, f"{name} ({n})", fontsize=9, weight="bold")
    if title:
        fig.text(0.01, 1 - 0.5 * title_h / (canvas_hw[0] + title_h), title, fontsize=9, va="center")
    cax = fig.add_axes((w_in / (w_in + 0.9) + 0.1 / (w_in + 0.9), 0.15, 0.15 / (w_in + 0.9), 0.7))
    _colorbar_in(fig, cax, VIS_CMAP, "predicted visibility")
    return fig


def _colorbar_in(fig, cax, cmap: str, label: str) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cb = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap=cmap), cax=cax)
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=6)
