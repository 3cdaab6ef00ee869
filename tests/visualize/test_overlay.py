import numpy as np

from occtool.visualize.overlay import colorize, heat_overlay, mosaic, sheet_layout, upsample_cells


def test_upsample_cells_is_nearest_cell():
    v = np.arange(49, dtype=np.float32).reshape(7, 7)
    up = upsample_cells(v, (112, 112))
    assert up.shape == (112, 112)
    assert up[0, 0] == 0 and up[15, 15] == 0 and up[16, 16] == 8 and up[111, 111] == 48
    assert np.array_equal(up[::16, ::16], v)


def test_all_visible_and_all_occluded_overlays_differ_where_expected():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    visible = heat_overlay(face, np.ones((7, 7)))
    occluded = heat_overlay(face, np.zeros((7, 7)))
    lower = np.ones((7, 7))
    lower[4:] = 0.0
    half = heat_overlay(face, lower)
    # everywhere different; the half-occluded map equals each extreme exactly on its own rows
    assert (np.abs(visible.astype(int) - occluded.astype(int)).sum(-1) > 0).all()
    assert np.array_equal(half[:64], visible[:64]) and np.array_equal(half[64:], occluded[64:])
    # green over visible cells, red over occluded ones (0.45 of the colour over the face)
    assert (visible[..., 1].astype(int) - face[..., 1] * 0.55).mean() > (occluded[..., 1].astype(int) - face[..., 1] * 0.55).mean()
    assert (occluded[..., 0].astype(int)).mean() > (visible[..., 0].astype(int)).mean()
    # alpha 0 is the face itself
    assert np.array_equal(heat_overlay(face, np.zeros((7, 7)), alpha=0.0), face)


def test_colorize_ends():
    c = colorize(np.array([[0.0, 1.0]]))
    assert c[0, 0, 0] > c[0, 0, 1]  # red end for 0
    assert c[0, 1, 1] > c[0, 1, 0]  # green end for 1


def test_sheet_layout_groups_start_new_rows():
    pos, heads, (h, w) = sheet_layout([3, 1], columns=2, tile_hw=(10, 10), label_h=2, header_h=5, gap=1)
    assert heads == [1, 1 + 5 + 2 * 13]
    assert pos == [(6, 1), (6, 12), (19, 1), (heads[1] + 5, 1)]
    assert (h, w) == (heads[1] + 5 + 13, 1 + 2 * 11)
    tiles = [np.full((10, 10, 3), k, np.uint8) for k in range(4)]
    canvas = mosaic(tiles, pos, (h, w), label_h=2)
    assert canvas.shape == (h, w, 3)
    for k, (y, x) in enumerate(pos):
        assert (canvas[y + 2 : y + 12, x : x + 10] == k).all()
