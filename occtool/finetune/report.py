"""report.md of a fine-tune: the per-epoch validation table, the best epoch and the decision."""

from __future__ import annotations

from pathlib import Path

from occtool.io import atomic_write_text


def _row(label: str, m: dict, kinds: list[str]) -> str:
    cells = [f"{100 * m[f'{k}/rank1']:.2f}" if f"{k}/rank1" in m else "" for k in kinds]
    sim = m.get("train/pair_similarity")
    return f"| {label} | " + " | ".join(cells) + f" | {'' if sim is None else f'{sim:.4f}'} |"


def write_report(path: Path, metrics: dict) -> Path:
    val = metrics["validation"]
    kinds = val.get("info", {}).get("probe_kinds", ["clean"]) + ["degraded"]
    lines = ["# finetune-contrastive", "", f"**{metrics['decision']}**", "",
             f"Start: {metrics['train']['start']}. Validation: {val.get('info', {})}.", "",
             "Rank-1 (%) on held-out people per probe kind, and the mean training-pair similarity of the epoch:", "",
             "| epoch | " + " | ".join(kinds) + " | pair similarity |", "|" + " --- |" * (len(kinds) + 2)]
    if val.get("start"):
        lines.append(_row("0 (start)", val["start"], kinds))
    for r in val.get("epochs", []):
        if r.get("epoch", 0) >= 1:
            lines.append(_row(str(r["epoch"]), r, kinds))
    lines += ["", f"Best: {metrics.get('best', {})}"]
    if metrics.get("warnings"):
        lines += ["", "Warnings:", *[f"- {w}" for w in metrics["warnings"]]]
    return atomic_write_text(path, "\n".join(lines) + "\n")
