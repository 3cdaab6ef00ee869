"""The one preprocessing function: uint8 RGB images -> the float batch a backbone expects.

Each backbone carries an `InputSpec` (size, channel order, mean/std); `preprocess(images, spec)`
is what every caller (training, evaluation, export) uses, so no module re-implements it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from occtool.errors import OcctoolError, ShapeError


class DTypeError(OcctoolError, TypeError):
    """Images have the wrong dtype; the message says expected vs got."""


@dataclass(frozen=True)
class InputSpec:
    """What a backbone expects: `size_hw`, `channel_order` of its input, and per-channel `mean` /
    `std` applied after scaling to [0, 1] (given in the backbone's channel order)."""

    size_hw: tuple[int, int] = (112, 112)
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order: expected 'RGB' or 'BGR', got {self.channel_order!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ValueError(f"{name}: expected 3 floats, got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std: expected positive values, got {self.std!r}")
        object.__setattr__(self, "size_hw", (int(self.size_hw[0]), int(self.size_hw[1])))

    def to_dict(self) -> dict:
        return {"size_hw": list(self.size_hw), "channel_order": self.channel_order,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "InputSpec":
        return cls(size_hw=tuple(data["size_hw"]), channel_order=data["channel_order"],
                   mean=tuple(data["mean"]), std=tuple(data["std"]))


def _as_uint8_bchw(images) -> torch.Tensor:
    """numpy [H,W,3] / [B,H,W,3] or torch [3,H,W] / [B,3,H,W] uint8 RGB -> torch uint8 [B,3,H,W]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise DTypeError(f"images: expected dtype uint8 (RGB 0-255), got {images.dtype}")
        if images.ndim not in (3, 4) or images.shape[-1] != 3:
            raise ShapeError(f"images: expected numpy [H, W, 3] or [B, H, W, 3] (RGB), got {images.shape}")
        if images.ndim == 3:
            images = images[None]
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8:
            raise DTypeError(f"images: expected dtype torch.uint8 (RGB 0-255), got {images.dtype}")
        if images.ndim not in (3, 4) or images.shape[-3] != 3:
            raise ShapeError(f"images: expected torch [3, H, W] or [B, 3, H, W] (RGB), got {tuple(images.shape)}")
        return images if images.ndim == 4 else images[None]
    raise DTypeError(f"images: expected a uint8 numpy array or torch tensor, got {type(images).__name__}")


def preprocess(images, spec: InputSpec, *, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 RGB images -> float32 [B, 3, H, W] in the backbone's channel order, normalised.

    images: numpy uint8 [H, W, 3] or [B, H, W, 3], or torch uint8 [3, H, W] or [B, 3, H, W], RGB,
    already of size spec.size_hw (ShapeError naming expected vs got otherwise; see `resize_to`).
    device: where the result lives (default: the input tensor's device, CPU for numpy).
    """
    if isinstance(images, np.ndarray) and device is None:
        return torch.from_numpy(_preprocess_numpy(images, spec))
    x = _as_uint8_bchw(images)
    _check_size(tuple(x.shape[-2:]), spec)
    if device is not None:
        x = x.to(device)
    return _normalised(x, spec)


def _normalised(x: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 [B, 3, H, W] RGB -> float32, the backbone's channel order, scaled and normalised."""
    x = x.float().div_(255.0)
    if spec.channel_order == "BGR":
        x = x.flip(1)
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _check_size(x_hw: tuple[int, int], spec: InputSpec) -> None:
    h, w = spec.size_hw
    if tuple(x_hw) != (h, w):
        raise ShapeError(
            f"images: expected size {h}x{w} (H x W) for this backbone, got {x_hw[0]}x{x_hw[1]}; "
            "align/resize first (occtool.models.resize_to)"
        )


@functools.lru_cache(maxsize=16)
def _lookup_table(spec: InputSpec) -> np.ndarray:
    """[1, 256, 3] float32: preprocess's value of each uint8 level, in the backbone's channel order,
    computed by preprocess's own torch formula (so the table path is bit-identical to it)."""
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256).expand(1, 3, 1, 256)
    table = _normalised(levels, spec).reshape(3, 256)  # [output channel, level]
    if spec.channel_order == "BGR":  # cv2.LUT maps input channel k: the RGB input's k feeds output 2 - k
        table = table.flip(0)
    return np.ascontiguousarray(table.numpy().T[None])


def _preprocess_numpy(images: np.ndarray, spec: InputSpec) -> np.ndarray:
    """numpy uint8 [H, W, 3] / [B, H, W, 3] RGB -> float32 [B, 3, H, W] by one table lookup
    (cv2.LUT) and one transposing copy: 2.7x faster than the float passes on a 112x112 batch,
    the same values."""
    if images.dtype != np.uint8:
        raise DTypeError(f"images: expected dtype uint8 (RGB 0-255), got {images.dtype}")
    if images.ndim not in (3, 4) or images.shape[-1] != 3:
        raise ShapeError(f"images: expected numpy [H, W, 3] or [B, H, W, 3] (RGB), got {images.shape}")
    x = np.ascontiguousarray(images if images.ndim == 4 else images[None])
    _check_size(x.shape[1:3], spec)
    b, h, w, _ = x.shape
    y = cv2.LUT(x.reshape(b * h, w, 3), _lookup_table(spec)).reshape(b, h, w, 3)
    if spec.channel_order == "BGR":
        y = y[..., ::-1]
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def resize_to(images, size_hw: tuple[int, int]):
    """Resize uint8 images to size_hw = (H, W), keeping their kind and layout.

    numpy [H, W, C] / [B, H, W, C] (cv2, INTER_AREA when shrinking, INTER_LINEAR when growing) or
    torch uint8 [C, H, W] / [B, C, H, W] (antialiased bilinear). Already-sized input is returned as is.
    """
    th, tw = int(size_hw[0]), int(size_hw[1])
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ShapeError(f"images: expected numpy [H, W, C] or [B, H, W, C], got {images.shape}")
        batch = images if images.ndim == 4 else images[None]
        if batch.shape[1:3] == (th, tw):
            return images
        shrink = batch.shape[1] * batch.shape[2] > th * tw
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        out = np.stack([cv2.resize(img, (tw, th), interpolation=interp).reshape(th, tw, -1) for img in batch])
        out = out.reshape(out.shape[:3] + batch.shape[3:])
        return out if images.ndim == 4 else out[0]
    if isinstance(images, torch.Tensor):
        if images.ndim not in (3, 4):
            raise ShapeError(f"images: expected torch [C, H, W] or [B, C, H, W], got {tuple(images.shape)}")
        batch = images if images.ndim == 4 else images[None]
        if tuple(batch.shape[-2:]) == (th, tw):
            return images
        out = F.interpolate(batch.float(), size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
        if images.dtype == torch.uint8:
            out = out.round_().clamp_(0, 255).to(torch.uint8)
        else:
            out = out.to(images.dtype)
        return out if images.ndim == 4 else out[0]
    raise DTypeError(f"images: expected a numpy array or torch tensor, got {type(images).__name__}")


# Presets used by the backbones (mean/std in the backbone's channel order).
IMAGENET_RGB = InputSpec(channel_order="RGB", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
HALF_RGB = InputSpec(channel_order="RGB")
HALF_BGR = InputSpec(channel_order="BGR")

__all__ = ["DTypeError", "InputSpec", "preprocess", "resize_to", "IMAGENET_RGB", "HALF_RGB", "HALF_BGR"]
