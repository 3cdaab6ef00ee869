"""RetinaFace (MobileNet-0.25) face detector with 5 landmarks, rebuilt from its state dict.

The network follows `../shared/weights/retinaface_mnet025/ARCH.md`: a MobileNetV1-0.25 body
(strides 8/16/32), a 3-level FPN (64 channels), one SSH context module per level and 1x1 heads
(2 anchors per location: face logits, box deltas, 5 landmark deltas). Input: BGR float minus the
mean (104, 117, 123), no scaling, at the image's own size (optionally downscaled to a max side).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from occtool.detect.paths import default_weights, resolve_weights  # noqa: F401 - re-exported
from occtool.errors import CheckpointError, ShapeError

from occtool.detect.decode import (  # noqa: F401 - re-exported
    BGR_MEAN,
    decode_boxes,
    decode_landmarks,
    face_scores,
    make_priors,
    nms,
    to_network_input,
)


@dataclass
class Detection:
    """One face: box [4] (x1, y1, x2, y2), score, landmarks [5, 2] (x, y) in image pixels.

    Landmark order: left eye, right eye, nose tip, left mouth corner, right mouth corner
    (left/right as seen in the image), the order of `occtool.data.landmarks`.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0], dtype=np.float32)


# ----------------------------------------------------------------------------- network


def _conv_bn(inp: int, oup: int, stride: int, *, kernel: int = 3, leaky: float | None = 0.1) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(oup),
    ]
    if leaky is not None:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


def _conv_dw(inp: int, oup: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise 3x3 + BN + act, pointwise 1x1 + BN + act (keys .0/.1/.3/.4)."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class _MobileNetV1(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, 2),
            _conv_dw(8, 16, 1),
            _conv_dw(16, 32, 2),
            _conv_dw(32, 32, 1),
            _conv_dw(32, 64, 2),
            _conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2), *[_conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        return c1, c2, c3


class _FPN(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int] = (64, 128, 256), out_channels: int = 64) -> None:
        super().__init__()
        self.output1 = _conv_bn(in_channels[0], out_channels, 1, kernel=1)
        self.output2 = _conv_bn(in_channels[1], out_channels, 1, kernel=1)
        self.output3 = _conv_bn(in_channels[2], out_channels, 1, kernel=1)
        self.merge1 = _conv_bn(out_channels, out_channels, 1)
        self.merge2 = _conv_bn(out_channels, out_channels, 1)

    def forward(self, feats):
        o1 = self.output1(feats[0])
        o2 = self.output2(feats[1])
        o3 = self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return o1, o2, o3


class _SSH(nn.Module):
    def __init__(self, in_channels: int = 64, out_channels: int = 64) -> None:
        super().__init__()
        self.conv3X3 = _conv_bn(in_channels, out_channels // 2, 1, leaky=None)
        self.conv5X5_1 = _conv_bn(in_channels, out_channels // 4, 1)
        self.conv5X5_2 = _conv_bn(out_channels // 4, out_channels // 4, 1, leaky=None)
        self.conv7X7_2 = _conv_bn(out_channels // 4, out_channels // 4, 1)
        self.conv7x7_3 = _conv_bn(out_channels // 4, out_channels // 4, 1, leaky=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c3 = self.conv3X3(x)
        c5_1 = self.conv5X5_1(x)
        c5 = self.conv5X5_2(c5_1)
        c7 = self.conv7x7_3(self.conv7X7_2(c5_1))
        return F.relu(torch.cat([c3, c5, c7], dim=1))


class _Head(nn.Module):
    def __init__(self, in_channels: int, per_anchor: int, num_anchors: int = 2) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(in_channels, num_anchors * per_anchor, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.per_anchor)


class RetinaFaceNet(nn.Module):
    """RetinaFace MobileNet-0.25. forward(x [B,3,H,W] BGR-mean) -> (boxes [B,N,4], logits [B,N,2],
    landmarks [B,N,10]) with N = sum over levels of ceil(H/s)*ceil(W/s)*2 anchors."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _MobileNetV1()
        self.fpn = _FPN()
        self.ssh1 = _SSH()
        self.ssh2 = _SSH()
        self.ssh3 = _SSH()
        self.ClassHead = nn.ModuleList([_Head(64, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([_Head(64, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([_Head(64, 10) for _ in range(3)])

    def forward(self, x: torch.Tensor):
        feats = self.fpn(self.body(x))
        feats = [self.ssh1(feats[0]), self.ssh2(feats[1]), self.ssh3(feats[2])]
        boxes = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        landmarks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        return boxes, logits, landmarks


def load_retinaface(weights: str | Path | None = None) -> RetinaFaceNet:
    """Build the network and load the state dict strictly (CheckpointError on any mismatch)."""
    path = resolve_weights(weights)
    from occtool.models.weights import torch_load_safe

    try:
        state = torch_load_safe(path, what="RetinaFace weights")  # pickled objects: refused with our line
    except CheckpointError as exc:
        raise CheckpointError(f"RetinaFace weights {path} do not load: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"RetinaFace weights {path}: expected a state dict, got {type(state).__name__}")
    state = OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in state.items())
    net = RetinaFaceNet()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:2]
        raise CheckpointError(f"RetinaFace weights {path} do not match the MobileNet-0.25 network: {' '.join(first)}") from None
    return net.eval()


# ----------------------------------------------------------------------------- detector


@dataclass(frozen=True)
class DetectorInput:
    """An image made ready for the network (`RetinaFaceDetector.prepare`): x [1, 3, h, w] float32
    (BGR minus the mean), the size (h, w) it is detected at, and the factor from the original
    pixels to that size."""

    x: np.ndarray
    hw: tuple[int, int]
    scale: float


class RetinaFaceDetector:
    """Face detector: `detect(image_rgb uint8 [H, W, 3]) -> list[Detection]`, highest score first.

    weights: state-dict path (default: the shared RetinaFace MobileNet-0.25 weights).
    score_threshold: faces with a lower face probability are dropped.
    nms_iou: IoU of the non-maximum suppression (`decode.nms`, torchvision.ops.nms's rule).
    max_side: images whose longer side exceeds it are downscaled for detection (coordinates are
      mapped back to the original pixels); None or 0 = always the original size.
    top_k: at most this many candidates enter NMS; keep_top_k: at most this many faces out.
    runtime: torch | onnxruntime | auto (ONNX Runtime on the CPU; `occtool.detect.graph`): the
      network runs as an exported graph, checked against PyTorch on the first image; with auto a
      graph that does not export or disagrees falls back to PyTorch (`self.runtime` says which).
    threads: ONNX Runtime intra-op threads.
    Pre- and post-processing are numpy (`occtool.detect.decode`) for both runtimes: with ONNX
    Runtime no torch op runs per image.
    """

    def __init__(
        self,
        *,
        weights: str | Path | None = None,
        score_threshold: float = 0.5,
        nms_iou: float = 0.4,
        max_side: int | None = 1024,
        device: str | torch.device = "cpu",
        top_k: int = 5000,
        keep_top_k: int = 750,
        runtime: str = "torch",
        threads: int = 1,
        graph_dir: str | Path | None = None,
    ) -> None:
        from occtool.runtime import resolve_runtime

        self.device = torch.device(device)
        self.net = load_retinaface(weights).to(self.device)
        self.requested_runtime = runtime
        self.runtime = resolve_runtime(runtime, self.device)
        self._graph = None
        if self.runtime == "onnxruntime":
            from occtool.detect.graph import DetectorGraph

            self._graph = DetectorGraph(self.net, resolve_weights(weights), threads=threads, graph_dir=graph_dir)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_side = int(max_side) if max_side else None
        self.top_k = int(top_k)
        self.keep_top_k = int(keep_top_k)
        self._priors: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._priors_lock = threading.Lock()  # detect may run in several threads (align's workers)

    def priors(self, height: int, width: int) -> np.ndarray:
        """Priors [N, 4] for an input size, cached (the 16 most recent sizes)."""
        key = (int(height), int(width))
        with self._priors_lock:
            cached = self._priors.get(key)
            if cached is None:
                cached = self._priors[key] = make_priors(*key)
                while len(self._priors) > 16:
                    self._priors.popitem(last=False)
            else:
                self._priors.move_to_end(key)
        return cached

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x [1, 3, H, W] -> box deltas [N, 4], logits [N, 2], landmark deltas [N, 10] (float32)."""
        if self._graph is not None:
            from occtool.models.export import ExportError

            try:
                return tuple(o[0] for o in self._graph.run(x))
            except ExportError:
                if self.requested_runtime == "onnxruntime":
                    raise
                self._graph, self.runtime = None, "torch"  # auto: PyTorch from now on
        with torch.inference_mode():
            out = self.net(torch.from_numpy(x).to(self.device))
        return tuple(o[0].float().cpu().numpy() for o in out)

    def prepare(self, image_rgb: np.ndarray) -> "DetectorInput":
        """The network's input for an image (downscaled to `max_side`, converted): the part of
        `detect` that needs no network, so a pipeline can run it ahead in another thread."""
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ShapeError(f"detect: expected uint8 RGB [H, W, 3], got {image.dtype} {tuple(image.shape)}")
        h0, w0 = image.shape[:2]
        scale = 1.0
        if self.max_side and max(h0, w0) > self.max_side:
            import cv2

            scale = self.max_side / float(max(h0, w0))
            size = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return DetectorInput(x=to_network_input(image), hw=tuple(image.shape[:2]), scale=scale)

    def detect(self, image_rgb: np.ndarray, *, prepared: "DetectorInput | None" = None) -> list[Detection]:
        """Faces in an image (uint8 RGB [H, W, 3]); `prepared`: its `prepare(image_rgb)`, made ahead."""
        p = self.prepare(image_rgb) if prepared is None else prepared
        box_d, logits, lmk_d = self._forward(p.x)
        return self._decode(box_d, logits, lmk_d, p.hw, p.scale)

    def _decode(self, box_d, logits, lmk_d, hw: tuple[int, int], scale: float) -> list[Detection]:
        """The network's outputs for one image of size `hw` -> detections in the original pixels."""
        scores = face_scores(logits)
        keep = np.flatnonzero(scores > self.score_threshold)
        if keep.size == 0:
            return []
        if keep.size > self.top_k:
            keep = keep[np.argsort(-scores[keep], kind="stable")[: self.top_k]]
        priors, scores = self.priors(*hw)[keep], scores[keep]
        to_pixels = np.array([hw[1], hw[0]], dtype=np.float32) / np.float32(scale)
        boxes = decode_boxes(box_d[keep], priors) * np.tile(to_pixels, 2)
        points = decode_landmarks(lmk_d[keep], priors) * to_pixels
        kept = nms(boxes, scores, self.nms_iou)[: self.keep_top_k]  # sorted by score, descending
        return [Detection(box=boxes[i].astype(np.float32), score=float(scores[i]),
                          landmarks=points[i].astype(np.float32)) for i in kept]
