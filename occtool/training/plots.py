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


def plot_validation(rows: list[dict], path: Path) -> Path | None:
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    keys = sorted({k for r in epochs for k in r if k.endswith("/rank1")})
    if not epochs or not keys:
        return None
    plt = _fig()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, probe in zip(axes, ("clean", "masked")):
        for k in (k for k in keys if k.startswith(probe + "/")):
            xs = [r["epoch"] for r in epochs if isinstance(r.get(k), (int, float))]
            ys = [100 * r[k] for r in epochs if isinstance(r.get(k), (int, float))]
            ax.plot(xs, ys, marker="o", ms=3, label=k.split("/")[1])
        ax.set_xlabel("epoch")
        ax.set_ylabel("rank-1 (%)")
        ax.set_title(f"validation, {probe} probes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path
