"""The restoration hook: a user's model (e.g. super-resolution) run on degraded views before the
recogniser, in training and in validation, exactly as it would run at test time.

`load_restorer(path)` reads a TorchScript (.pt/.ts/.jit/.pth, `torch.jit.load`) or ONNX
(.onnx, onnxruntime) file. The model takes float RGB [B, 3, H, W] in [0, 1] and returns the
same layout (values clipped to [0, 1]; another output size is resized back to H x W, bicubic).
`Restorer(images uint8 [B, H, W, 3]) -> uint8 [B, H, W, 3]`. The restorer is frozen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from occtool.errors import ConfigError, DataError, ShapeError

ONNX_SUFFIXES = (".onnx",)


class Restorer:
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], *, source: str, batch_size: int = 32) -> None:
        self.fn, self.source, self.batch_size = fn, source, batch_size

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ShapeError(f"restorer input: expected uint8 [B, H, W, 3], got {images.dtype} {images.shape}")
        b, h, w, _ = images.shape
        out = []
        for s in range(0, b, self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[s:s + self.batch_size])).permute(0, 3, 1, 2).float() / 255.0
            y = self.fn(x)
            if not isinstance(y, torch.Tensor) or y.ndim != 4 or y.shape[:2] != x.shape[:2]:
                raise ShapeError(f"restoration model {self.source}: expected an output [B, 3, H', W'] for input "
                                 f"{tuple(x.shape)}, got {getattr(y, 'shape', type(y))}")
            if tuple(y.shape[-2:]) != (h, w):
                y = F.interpolate(y.float(), size=(h, w), mode="bicubic", align_corners=False)
            out.append((y.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
        return np.concatenate(out) if out else images.copy()


def load_restorer(path: str | Path, *, batch_size: int = 32) -> Restorer:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"degrade.restore: restoration model not found: {path}")
    if path.suffix.lower() in ONNX_SUFFIXES:
        return Restorer(_onnx_fn(path), source=str(path), batch_size=batch_size)
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001 - anything torch cannot read is the user's file
        raise ConfigError(f"degrade.restore: {path} is not a TorchScript file ({exc.__class__.__name__}); "
                          "save it with torch.jit.save(torch.jit.script(model)) or export ONNX (.onnx)") from None
    for p in module.parameters():
        p.requires_grad_(False)
    return Restorer(module, source=str(path), batch_size=batch_size)


def _onnx_fn(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("degrade.restore: an ONNX restoration model needs onnxruntime (pip install onnxruntime)") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"degrade.restore: {path} is not a readable ONNX model ({exc})") from None
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(session.run(None, {name: x.numpy().astype(np.float32)})[0]))

    return run
