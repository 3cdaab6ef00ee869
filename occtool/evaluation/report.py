"""Writing an evaluation result: metrics.json, scores.csv and PNG plots (ROC, CMC, histograms).

All files are written atomically. Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from occtool.io import atomic_save, atomic_write_json, atomic_write_text


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_scores_csv(path: str | Path, rows: list[dict]) -> Path:
    buf = io.StringIO()
    if rows:
        fields = list(rows[0].keys())
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path, dpi: int = 110) -> Path:
    fig.tight_layout()
    try:
        return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
    finally:
        plt.close(fig)


def _curve_plot(path: str | Path, curves: dict, title: str, *, xlabel: str, ylabel: str, draw) -> Path:
    """One line per method (`draw(ax, method, curve)`), on shared axes in [0, 1]."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m, c in curves.items():
        draw(ax, m, c)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    return _save(plt, fig, path)


def plot_roc(path: str | Path, curves: dict, title: str) -> Path:
    def draw(ax, m, c):
        far, tar = np.asarray(c["roc_far"]), np.asarray(c["roc_tar"])
        pos = far > 0  # a log axis
        ax.plot(far[pos], tar[pos], label=m)
        ax.set_xscale("log")

    return _curve_plot(path, curves, title, xlabel="false accept rate", ylabel="true accept rate", draw=draw)


def plot_cmc(path: str | Path, curves: dict, title: str) -> Path:
    def draw(ax, m, c):
        cmc = np.asarray(c["cmc"])
        ax.plot(np.arange(1, cmc.size + 1), cmc, marker=".", label=m)

    return _curve_plot(path, curves, title, xlabel="rank", ylabel="identification rate", draw=draw)


def plot_histograms(path: str | Path, curves: dict, title: str) -> Path:
    plt = _plt()
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.6), squeeze=False)
    for ax, (m, c) in zip(axes[0], curves.items()):
        gen = np.asarray(c["genuine"], dtype=np.float64)
        imp = np.asarray(c["impostor"], dtype=np.float64)
        lo = float(min(gen.min(), imp.min()))
        hi = float(max(gen.max(), imp.max()))
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 81)
        ax.hist(imp, bins=bins, density=True, alpha=0.55, label=f"impostor ({imp.size})")
        ax.hist(gen, bins=bins, density=True, alpha=0.55, label=f"genuine ({gen.size})")
        ax.set_title(m)
        ax.set_xlabel("score")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path, dpi=100)


def write_report(out: str | Path, result: dict) -> list[Path]:
    """Write metrics.json, scores.csv, roc.png, histograms.png (+ cmc.png in identification mode)."""
    out = Path(out)
    metrics = result["metrics"]
    written = [atomic_write_json(out / "metrics.json", _json_safe(metrics))]
    written.append(write_scores_csv(out / "scores.csv", result["rows"]))
    curves = result["curves"]
    mode = metrics.get("mode", "")
    if curves:
        written.append(plot_roc(out / "roc.png", curves, f"ROC ({mode})"))
        written.append(plot_histograms(out / "histograms.png", curves, f"genuine vs impostor scores ({mode})"))
        if mode == "identification":
            written.append(plot_cmc(out / "cmc.png", curves, "CMC"))
    return written
