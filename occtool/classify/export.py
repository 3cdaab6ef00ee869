"""ONNX export of a classifier: input `input` float32 [B, 3, 224, 224] (dynamic B), output
`probabilities` [B, 3] (softmax over CLASSES), checked against PyTorch with onnxruntime."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from occtool.classify.geometry import INPUT_SIZE
from occtool.classify.models import OcclusionClassifier
from occtool.errors import OcctoolError, ShapeError

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


class _WithSoftmax(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def torch_probabilities(model: OcclusionClassifier, x: np.ndarray) -> np.ndarray:
    """float32 [B, 3, 224, 224] -> probabilities [B, 3] with PyTorch (eval, no grad)."""
    model.eval()
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(np.ascontiguousarray(x, np.float32))), 1).numpy()


def onnx_session(path: str | Path, *, threads: int = 0):
    """An onnxruntime CPU session for an exported classifier."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for unreadable files
        raise OcctoolError(f"{path}: not a loadable ONNX model ({type(exc).__name__}: {str(exc)[:160]})") from None


def export_graph(model: OcclusionClassifier, path: str | Path, *, opset: int = 17) -> Path:
    """The classifier with its softmax as an ONNX graph at `path` (atomic, dynamic batch, occtool
    metadata): the one writer of `classify export` and the graph cache of `--runtime`.
    ExportError with the exporter's reason when it cannot export."""
    from occtool.models.export import export_module

    return export_module(_WithSoftmax(copy.deepcopy(model).cpu().eval()).eval(), path,
                         example=torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE), output_names=[OUTPUT_NAME],
                         dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                         metadata={"occtool_kind": "classifier", "occtool_arch": str(model.arch)},
                         what=f"classifier {model.arch}", opset=opset)


def export_onnx(model: OcclusionClassifier, path: str | Path, *, check_inputs: np.ndarray, opset: int = 17) -> dict:
    """Export `model` to `path` (atomically) and compare with PyTorch on `check_inputs`
    (float32 [B, 3, 224, 224], B >= 2 so that the dynamic batch is exercised).

    Returns {"max_abs_prob_diff", "argmax_agree", "n", "opset", "bytes"}; OcctoolError when the
    probabilities differ by 1e-4 or more.
    """
    x = np.ascontiguousarray(check_inputs, np.float32)
    if x.ndim != 4 or x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE) or len(x) < 2:
        raise ShapeError(f"check_inputs: expected float32 [B>=2, 3, {INPUT_SIZE}, {INPUT_SIZE}], got {x.shape}")
    export_graph(model, path, opset=opset)
    ours = onnx_session(path).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    ref = torch_probabilities(model.cpu(), x)
    diff = float(np.abs(ours - ref).max())
    result = {"max_abs_prob_diff": diff, "argmax_agree": float((ours.argmax(1) == ref.argmax(1)).mean()),
              "n": int(len(x)), "opset": opset, "bytes": Path(path).stat().st_size}
    if not diff < 1e-4:
        raise OcctoolError(f"ONNX export {path}: probabilities differ from PyTorch by {diff:.2e} (>= 1e-4)")
    return result
