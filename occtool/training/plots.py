"""Loss and validation curves (PNG, matplotlib Agg), written atomically."""

from __future__ import annotations

from pathlib import Path

from occtool.io import atomic_save


def _fig():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_losses(rows: list[dict], path: Path) -> Path | None:
    steps = [r for r in rows if r.get("kind") == "step"]
    if not steps:
        return None
    plt = _fig()
    keys = sorted({k for r in steps for k in r if k.startswith("loss")})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k in keys:
        xs = [r["step"] for r in steps if isinstance(r.get(k), (int, float))]
        ys = [r[k] for r in steps if isinstance(r.get(k), (int, float))]
        if xs:
            ax.plot(xs, ys, label=k, lw=1.2 if k == "loss" else 0.9)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("training losses")
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def validation_series(rows: list[dict]) -> dict[str, dict[str, tuple[list, list]]]:
    """{probe set: {line label: (epochs, rank-1 %)}} from the history's epoch rows. Keys are
    `probe/method/rank1` (train: a line per scoring method) or `probe/rank1` (finetune-contrastive)."""
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    keys = sorted({k for r in epochs for k in r if k.endswith("/rank1") and not k.startswith("train/")})
    series: dict[str, dict[str, tuple[list, list]]] = {}
    for k in keys:
        parts = k.split("/")
        xs = [r["epoch"] for r in epochs if isinstance(r.get(k), (int, float))]
        ys = [100 * r[k] for r in epochs if isinstance(r.get(k), (int, float))]
        series.setdefault(parts[0], {})["/".join(parts[1:-1]) or "rank-1"] = (xs, ys)
    return series


def plot_validation(rows: list[dict], path: Path) -> Path | None:
    """validation_curves.png: one panel per probe set (None when there is nothing to plot)."""
    series = validation_series(rows)
    if not series:
        return None
    plt = _fig()
    fig, axes = plt.subplots(1, len(series), figsize=(5.5 * len(series), 4.5), squeeze=False)
    for ax, (probe, lines) in zip(axes[0], series.items()):
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, marker="o", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("rank-1 (%)")
        ax.set_title(f"validation, {probe} probes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path
