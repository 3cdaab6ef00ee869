"""occtool checkpoints: a FaceModel (+ optional QAConvMatcher), the config and the versions.

File = torch.save of plain data only, so `torch.load(weights_only=True)` reads it:
    {"format": "occtool", "format_version": 1,
     "versions": {"occtool": ..., "torch": ...},
     "model": {"backbone": name, "hidden_channels": int, "neck_channels": int | None,
               "state_dict": {...}, "backbone_variant": str | None, "input_spec": {...},
               "neck_options": {"kernel", "hidden", "position"[, "local"]} (only for a non-default neck),
               "qaconv_branch": True (only when the model has the QAConv branch)},
     "matcher": None | {"num_features", "height", "width", "state_dict"},
     "config": dict, "extra": dict}
Written atomically (temp file + rename): an interrupted save never leaves a half-written file.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from occtool import __version__
from occtool.errors import CheckpointError
from occtool.io import atomic_save
from occtool.matching import QAConvMatcher
from occtool.models.face_model import FaceModel
from occtool.models.preprocess import InputSpec
from occtool.models.registry import create_backbone
from occtool.models.weights import load_strict, torch_load_safe

FORMAT = "occtool"
FORMAT_VERSION = 1
DEFAULT_NECK_OPTIONS = {"kernel": 1, "hidden": None, "position": False}  # occtool.models.neck's defaults


class LoadedCheckpoint(NamedTuple):
    model: FaceModel
    matcher: nn.Module | None
    config: dict
    extra: dict


def _unwrap(module: nn.Module) -> nn.Module:
    """DistributedDataParallel / DataParallel -> the wrapped module."""
    while hasattr(module, "module") and isinstance(module.module, nn.Module):
        module = module.module
    return module


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def to_plain(obj: Any, where: str = "config") -> Any:
    """Dataclasses, paths, numpy values, enums -> plain Python data that weights_only can load."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name), f"{where}.{f.name}") for f in dataclasses.fields(obj)}
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value, where)
    for base in (bool, int, float, str):  # subclasses (e.g. torch's TorchVersion) would need their class
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"{where}: key {k!r} is a {type(k).__name__}; only str/int keys can be stored")
            out[k] = to_plain(v, f"{where}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        items = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise CheckpointError(f"{where}: a {type(obj).__name__} cannot be stored in a weights_only checkpoint")


def save_model_checkpoint(
    path: str | Path,
    *,
    model: FaceModel,
    matcher: nn.Module | None,
    config: dict,
    extra: dict | None = None,
) -> Path:
    """Write model (+ matcher), config and extra to `path` atomically; returns the path."""
    model = _unwrap(model)
    if not isinstance(model, FaceModel):
        raise TypeError(f"model: expected a FaceModel, got {type(model).__name__}")
    if getattr(model, "fused_for_inference", False):
        raise TypeError("model: a fuse_for_inference() copy cannot be saved (its BatchNorms are folded away); save the original")
    backbone = model.backbone
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {"occtool": str(__version__), "torch": str(torch.__version__)},
        "model": {
            "backbone": backbone.name,
            "hidden_channels": model.hidden_channels,
            "neck_channels": model.neck_channels,
            "state_dict": _cpu_state(model),
            "backbone_variant": getattr(backbone, "variant", None),
            "input_spec": backbone.input_spec.to_dict(),
        },
        "matcher": None,
        "config": to_plain(dict(config) if isinstance(config, Mapping) else config, "config"),
        "extra": to_plain(dict(extra or {}), "extra"),
    }
    neck_options = getattr(model, "neck_options", None)
    if model.neck is not None and neck_options and neck_options != DEFAULT_NECK_OPTIONS:
        payload["model"]["neck_options"] = dict(neck_options)  # absent: the default 1x1 neck
    if getattr(model, "branch", None) is not None:
        payload["model"]["qaconv_branch"] = True  # absent: no branch (older checkpoints too)
    if matcher is not None:
        matcher = _unwrap(matcher)
        dims = {}
        for name in ("num_features", "height", "width"):
            value = getattr(matcher, name, None)
            if not isinstance(value, int):
                raise TypeError(f"matcher: expected an int attribute {name!r} (a QAConvMatcher), got {value!r}")
            dims[name] = value
        payload["matcher"] = {**dims, "state_dict": _cpu_state(matcher)}
    return atomic_save(path, lambda tmp: torch.save(payload, tmp))


def load_model_checkpoint(path: str | Path, *, map_location="cpu") -> LoadedCheckpoint:
    """Rebuild the FaceModel (and QAConvMatcher, if saved) from an occtool checkpoint.

    Both come back in eval mode, on `map_location` when it names a device. CheckpointError on a
    missing file, a file that is not an occtool checkpoint, or weights that do not match.
    """
    path = Path(path)
    ckpt = torch_load_safe(path, map_location="cpu", what="checkpoint")
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != FORMAT:
        plain = isinstance(ckpt, Mapping) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values())
        what = "plain backbone weights (a state dict)" if plain else "not an occtool checkpoint (no format='occtool' entry)"
        raise CheckpointError(
            f"{path}: {what}, not an occtool checkpoint (model.pt of occtool train); backbone weights are "
            f"given as --backbone NAME --weights {path} (Python: create_backbone(name, weights=...))"
        )
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format_version {version!r} is not supported (this occtool reads <= {FORMAT_VERSION}); upgrade occtool")
    try:
        m = ckpt["model"]
        name, hidden, neck, state = m["backbone"], m["hidden_channels"], m["neck_channels"], m["state_dict"]
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: malformed occtool checkpoint (model entry lacks {exc})") from None
    try:
        backbone = create_backbone(name, variant=m.get("backbone_variant"))
        opts = dict(m.get("neck_options") or {})
        model = FaceModel(backbone=backbone, hidden_channels=hidden, neck_channels=neck,
                          neck_kernel=opts.get("kernel", 1), neck_hidden=opts.get("hidden"),
                          neck_position=opts.get("position", False),
                          neck_local=state.get("neck.0.jacobian", True) if opts.get("local") else False,
                          qaconv_branch=bool(m.get("qaconv_branch", False)))
    except Exception as exc:  # noqa: BLE001 - a bad description is a bad checkpoint
        raise CheckpointError(f"{path}: cannot rebuild the model it describes ({exc})") from None
    load_strict(model, state, what=f"{path}: model weights")
    if m.get("input_spec"):
        backbone.input_spec = InputSpec.from_dict(m["input_spec"])

    matcher = None
    if ckpt.get("matcher") is not None:
        mm = ckpt["matcher"]
        try:
            matcher = QAConvMatcher(num_features=mm["num_features"], height=mm["height"], width=mm["width"])
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: malformed matcher entry ({exc})") from None
        load_strict(matcher, mm["state_dict"], what=f"{path}: matcher weights")
        matcher.eval()

    model.eval()
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
        if matcher is not None:
            matcher.to(map_location)
    return LoadedCheckpoint(model=model, matcher=matcher, config=dict(ckpt.get("config") or {}), extra=dict(ckpt.get("extra") or {}))


__all__ = ["FORMAT", "FORMAT_VERSION", "LoadedCheckpoint", "load_model_checkpoint", "save_model_checkpoint", "to_plain"]
