"""RetinaFace in ONNX Runtime: its network exported once per weights file (any image size and
batch: dynamic axes), cached as `<graph_dir>/retinaface-<weights sha1>.onnx` (default
`<feature cache>/onnx`, beside eval-gallery's graphs), and checked against PyTorch on the first
image it is used for (max abs difference of every output <= `DETECTOR_TOL`)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

OUTPUTS = ("box_deltas", "logits", "landmark_deltas")
DETECTOR_TOL = 1e-4


def default_graph_dir() -> Path:
    from occtool.evaluation.eval_gallery import default_cache_dir

    return default_cache_dir() / "onnx"


class DetectorGraph:
    """`run(x [B, 3, H, W] float32 numpy, BGR minus the mean)` -> the network's three outputs (numpy)."""

    def __init__(self, net: torch.nn.Module, weights_file: str | Path, *, threads: int = 1,
                 graph_dir: str | Path | None = None) -> None:
        from occtool.data.images import file_sha1

        self.net = net
        self.threads = int(threads)
        self.path = Path(graph_dir or default_graph_dir()) / f"retinaface-{file_sha1(weights_file)[:20]}.onnx"
        self.session = None
        self.check: dict[str, float] | None = None
        self._lock = threading.Lock()  # align's worker threads share one graph: export and check once

    def _open(self, x: np.ndarray) -> None:
        """Export (unless cached), then check against PyTorch on `x`; ExportError when they disagree."""
        from occtool.models.export import INPUT_NAME, ExportError, export_module
        from occtool.runtime.session import cached_session

        if not self.path.is_file():
            dyn = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, **{n: {0: "batch", 1: "anchors"} for n in OUTPUTS}}
            export_module(self.net.eval(), self.path, example=torch.zeros(1, 3, 64, 96), output_names=OUTPUTS,
                          dynamic_axes=dyn, metadata={"occtool_kind": "retinaface"}, what="retinaface")
        self.session = cached_session(self.path, threads=self.threads)
        with torch.no_grad():
            ref = self.net(torch.from_numpy(x))
        got = self.session.run(None, {INPUT_NAME: x})
        self.check = {n: float(np.abs(g - r.numpy()).max()) for n, g, r in zip(OUTPUTS, got, ref)}
        worst = max(self.check.values())
        if not worst <= DETECTOR_TOL * max(1.0, max(float(r.abs().max()) for r in ref)):
            self.session = None
            raise ExportError(f"retinaface: the exported graph disagrees with PyTorch ({worst:.2e})")

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        from occtool.models.export import INPUT_NAME

        x = np.ascontiguousarray(x, dtype=np.float32)  # a no-op for `to_network_input`'s arrays
        session = self.session
        if session is None:
            with self._lock:
                if self.session is None:
                    self._open(x)
                session = self.session
        return session.run(None, {INPUT_NAME: x})
