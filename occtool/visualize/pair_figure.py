"""The pair figure: two faces, their visibility, QAConv's correspondences (with and without the
occlusion weighting) and the visibility-matched score's per-location contributions."""

from __future__ import annotations

import numpy as np

from occtool.visualize.correspondence import Correspondences, MatchedBreakdown
from occtool.visualize.figures import PANEL_DPI, _colorbar, _face_axis, pyplot
from occtool.visualize.overlay import VIS_CMAP, heat_overlay

CORR_CMAP = "viridis"
CONTRIB_CMAP = "coolwarm"
PAIR_GAP = 16  # pixels between the two faces of a correspondence drawing


def _cell_centre(loc: int, size_hw: tuple[int, int], image_hw: tuple[int, int]) -> tuple[float, float]:
    """(x, y) pixel centre of map cell `loc` (row-major) on an image."""
    h, w = size_hw
    r, c = divmod(int(loc), w)
    return (c + 0.5) * image_hw[1] / w - 0.5, (r + 0.5) * image_hw[0] / h - 0.5


def _draw_correspondences(fig, ax, probe, gallery, corr: Correspondences, title: str, vmax: float) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    hw = probe.shape[:2]
    canvas = np.full((hw[0], 2 * hw[1] + PAIR_GAP, 3), 255, dtype=np.uint8)
    canvas[:, : hw[1]] = probe
    canvas[:, hw[1] + PAIR_GAP :] = gallery
    _face_axis(ax, canvas, title)
    norm = Normalize(0.0, max(vmax, 1e-6))
    sm = ScalarMappable(norm, cmap=CORR_CMAP)
    for r, s, sc in zip(corr.probe_loc[::-1], corr.gallery_loc[::-1], corr.scores[::-1]):  # best drawn last
        x0, y0 = _cell_centre(r, corr.size_hw, hw)
        x1, y1 = _cell_centre(s, corr.size_hw, hw)
        colour = sm.to_rgba(float(sc))
        ax.plot([x0, x1 + hw[1] + PAIR_GAP], [y0, y1], color=colour, lw=1.4)
        ax.plot([x0, x1 + hw[1] + PAIR_GAP], [y0, y1], "o", color=colour, ms=3)
    cb = fig.colorbar(sm, ax=ax, fraction=0.03, pad=0.02)
    cb.set_label("location similarity", fontsize=7)
    cb.ax.tick_params(labelsize=6)


def _draw_contributions(fig, ax, face, matched: MatchedBreakdown) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    c = matched.per_location
    m = float(np.abs(c).max()) or 1e-6
    _face_axis(ax, heat_overlay(face, c / (2 * m) + 0.5, alpha=0.55, cmap=CONTRIB_CMAP),
               f"per-location share of the matched score\n(sum {c.sum():+.3f} + bias {matched.bias_share:+.3f}"
               f" = {matched.score:.3f}), x100")
    h, w = c.shape
    for r in range(h):
        for col in range(w):
            x, y = _cell_centre(r * w + col, (h, w), face.shape[:2])
            ax.text(x, y, f"{round(100 * float(c[r, col])):d}", ha="center", va="center", fontsize=5.5)
    cb = fig.colorbar(ScalarMappable(Normalize(-m, m), cmap=CONTRIB_CMAP), ax=ax, fraction=0.046, pad=0.03)
    cb.ax.tick_params(labelsize=6)


def pair_figure(probe: np.ndarray, gallery: np.ndarray, *, vis_p: np.ndarray | None, vis_g: np.ndarray | None,
                corr_weighted: Correspondences | None, corr_plain: Correspondences | None,
                matched: MatchedBreakdown | None, scores: dict[str, float], names: tuple[str, str] = ("", ""),
                title: str = "") -> "matplotlib.figure.Figure":  # noqa: F821
    """Row 1: the faces and their predicted visibility; row 2: QAConv's top-k correspondences,
    occlusion-weighted and plain (same colour scale); row 3: the joint visibility and the
    visibility-matched score's per-location shares. Scores of every method in the title."""
    plt = pyplot()
    fig = plt.figure(figsize=(10.5, 8.4), dpi=PANEL_DPI)
    gs = fig.add_gridspec(3, 4)
    _face_axis(fig.add_subplot(gs[0, 0]), probe, f"probe\n{names[0]}")
    _face_axis(fig.add_subplot(gs[0, 1]), gallery, f"gallery\n{names[1]}")
    for j, (img, vis, who) in enumerate(((probe, vis_p, "probe"), (gallery, vis_g, "gallery"))):
        ax = fig.add_subplot(gs[0, 2 + j])
        if vis is None:
            ax.axis("off")
            continue
        _face_axis(ax, heat_overlay(img, vis), f"{who} visibility, mean {float(np.mean(vis)):.2f}")
        _colorbar(fig, ax, VIS_CMAP, "visibility")
    corrs = [c for c in (corr_weighted, corr_plain) if c is not None]
    vmax = max((float(c.scores.max()) for c in corrs if c.scores.size), default=1.0)
    for j, (corr, what) in enumerate(((corr_weighted, "with"), (corr_plain, "without"))):
        if corr is not None:
            _draw_correspondences(fig, fig.add_subplot(gs[1, 2 * j : 2 * j + 2]), probe, gallery, corr,
                                  f"QAConv top-{len(corr.scores)} correspondences {what} occlusion weighting", vmax)
    if matched is not None:
        ax = fig.add_subplot(gs[2, 0:2])
        _face_axis(ax, heat_overlay(probe, matched.joint[0]),
                   "joint visibility v_probe * v_gallery (on the probe)")
        _colorbar(fig, ax, VIS_CMAP, "joint visibility")
        _draw_contributions(fig, fig.add_subplot(gs[2, 2:4]), probe, matched)
    line = "   ".join(f"{k} {v:.3f}" for k, v in scores.items())
    fig.suptitle(f"{title}\n{line}".strip(), fontsize=9)
    fig.tight_layout()
    return fig
