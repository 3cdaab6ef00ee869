"""Classifier checkpoints: plain data for `torch.load(weights_only=True)`, written atomically.

    {"format": "occtool-classifier", "format_version": 1, "versions": {...},
     "arch": name, "options": {head_width, flip_average} (create_classifier's; absent: defaults),
     "classes": [...], "state_dict": {...}, "config": dict, "extra": dict}

`extra["train_state"]` (optimiser, epoch, best accuracy, history) makes `--resume` exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch

from occtool.classify.models import CLASSES, OcclusionClassifier, create_classifier
from occtool.errors import CheckpointError

FORMAT = "occtool-classifier"
FORMAT_VERSION = 1


class LoadedClassifier(NamedTuple):
    model: OcclusionClassifier
    config: dict
    extra: dict


def save_classifier(path: str | Path, *, model: OcclusionClassifier, config, extra: dict | None = None) -> Path:
    from occtool import __version__
    from occtool.io import atomic_save
    from occtool.models.checkpoint import to_plain

    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {"occtool": str(__version__), "torch": str(torch.__version__)},
        "arch": model.arch,
        "options": dict(model.options),
        "classes": list(model.classes),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": to_plain(config, "config"),
        "extra": to_plain(dict(extra or {}), "extra"),
    }
    return atomic_save(path, lambda tmp: torch.save(payload, tmp))


def load_classifier(path: str | Path) -> LoadedClassifier:
    """Rebuild a classifier (eval mode, CPU). CheckpointError for a missing file, another kind of
    checkpoint (e.g. an `occtool train` face model) or weights that do not fit."""
    from occtool.models.weights import load_strict, torch_load_safe

    path = Path(path)
    ckpt = torch_load_safe(path, map_location="cpu", what="classifier checkpoint")
    kind = ckpt.get("format") if isinstance(ckpt, Mapping) else None
    if kind == "occtool":
        raise CheckpointError(f"{path}: a face-model checkpoint (occtool train), not an occlusion-type classifier (occtool classify train)")
    if kind != FORMAT:
        raise CheckpointError(f"{path}: not an occtool classifier checkpoint (no format={FORMAT!r} entry)")
    if not isinstance(ckpt.get("format_version"), int) or ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: classifier format_version {ckpt.get('format_version')!r} is not supported; upgrade occtool")
    if tuple(ckpt.get("classes") or ()) != CLASSES:
        raise CheckpointError(f"{path}: classes {ckpt.get('classes')!r}, expected {list(CLASSES)}")
    try:
        model = create_classifier(ckpt["arch"], backbone_weights=None, **dict(ckpt.get("options") or {}))
    except Exception as exc:  # noqa: BLE001 - a bad description is a bad checkpoint
        raise CheckpointError(f"{path}: cannot rebuild the classifier it describes ({exc})") from None
    load_strict(model, ckpt["state_dict"], what=f"{path}: classifier weights")
    model.eval()
    return LoadedClassifier(model=model, config=dict(ckpt.get("config") or {}), extra=dict(ckpt.get("extra") or {}))
