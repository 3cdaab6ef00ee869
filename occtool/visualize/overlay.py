"""Pixel-level pieces of the figures (numpy): visibility maps upsampled to the face, heat
overlays, and the tile mosaic of a contact sheet.

The heat colours come from one colormap (`VIS_CMAP`, red = occluded 0 -> green = visible 1) so
that every figure and its colour bar agree. Maps are upsampled by *nearest* cell (a 7x7 map
becomes 16x16-pixel blocks on a 112x112 face): the blocks are the model's real resolution.
"""

from __future__ import annotations

import numpy as np

from occtool.errors import ShapeError

VIS_CMAP = "RdYlGn"  # 0 (occluded) red, 0.5 yellow, 1 (visible) green
ERR_CMAP = "magma"  # |predicted - true| in [0, 1]
DEFAULT_ALPHA = 0.45


def upsample_cells(vis: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """[h, w] map -> [H, W] by nearest cell (each output pixel takes the cell it falls in)."""
    v = np.asarray(vis, dtype=np.float32)
    if v.ndim != 2:
        raise ShapeError(f"visibility map: expected [h, w], got {tuple(v.shape)}")
    H, W = int(size_hw[0]), int(size_hw[1])
    rows = np.minimum((np.arange(H) * v.shape[0]) // H, v.shape[0] - 1)
    cols = np.minimum((np.arange(W) * v.shape[1]) // W, v.shape[1] - 1)
    return v[rows][:, cols]


def colorize(values: np.ndarray, cmap: str = VIS_CMAP) -> np.ndarray:
    """[H, W] values in [0, 1] -> uint8 RGB [H, W, 3] through a matplotlib colormap."""
    from matplotlib import colormaps

    rgba = colormaps[cmap](np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0))
    return np.round(rgba[..., :3] * 255).astype(np.uint8)


def heat_overlay(image: np.ndarray, vis: np.ndarray, *, alpha: float = DEFAULT_ALPHA, cmap: str = VIS_CMAP) -> np.ndarray:
    """The face with its visibility map blended on top: (1 - alpha) * face + alpha * colour(v).

    image uint8 [H, W, 3]; vis [h, w] (any resolution, upsampled by cell) -> uint8 [H, W, 3].
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ShapeError(f"image: expected uint8 [H, W, 3], got {tuple(img.shape)}")
    heat = colorize(upsample_cells(vis, img.shape[:2]), cmap).astype(np.float32)
    out = (1.0 - alpha) * img.astype(np.float32) + alpha * heat
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def sheet_layout(group_sizes: list[int], *, columns: int, tile_hw: tuple[int, int], label_h: int = 14,
                 header_h: int = 18, gap: int = 4) -> tuple[list[tuple[int, int]], list[int], tuple[int, int]]:
    """Pixel layout of a contact sheet whose groups each start on a new row under a header band
    (`header_h` = 0: no headers). Every tile has `label_h` pixels of room for its label above it.

    Returns (top-left (y, x) of every tile's label band, in group order; y of every group's header;
    canvas (height, width)).
    """
    th, tw = tile_hw
    cell_h, cell_w = label_h + th + gap, tw + gap
    tiles, headers, y = [], [], gap
    for n in group_sizes:
        headers.append(y)
        y += header_h
        for i in range(n):
            tiles.append((y + (i // columns) * cell_h, gap + (i % columns) * cell_w))
        y += max(1, -(-n // columns)) * cell_h
    return tiles, headers, (y, gap + columns * cell_w)


def mosaic(tiles: list[np.ndarray], positions: list[tuple[int, int]], canvas_hw: tuple[int, int], *,
           label_h: int = 14, fill: int = 255) -> np.ndarray:
    """Paste uint8 [h, w, 3] tiles at the label-band positions of `sheet_layout` -> uint8 canvas."""
    canvas = np.full((int(canvas_hw[0]), int(canvas_hw[1]), 3), fill, dtype=np.uint8)
    for tile, (y, x) in zip(tiles, positions):
        h, w = tile.shape[:2]
        canvas[y + label_h : y + label_h + h, x : x + w] = tile
    return canvas
