"""The classifier of `classify predict` / `evaluate` in PyTorch or ONNX Runtime (`occtool.runtime`).

A `.onnx` file runs in ONNX Runtime. A checkpoint (`model.pt`) runs in PyTorch with runtime
`torch`; with `onnxruntime` or `auto` (ONNX Runtime on the CPU) it is exported once per checkpoint
file to `<graph_dir>/classifier-<sha1 of the file>.onnx` (default `<feature cache>/onnx`, beside
eval-gallery's and the detector's graphs) and checked against PyTorch on the first batch of the
run's own crops (max probability difference < `CLASSIFIER_TOL`). A classifier that does not
export (found when the predictor is built, before any output is written), or whose graph
disagrees, is an ExportError with `onnxruntime` and runs in PyTorch with `auto`
(`GraphPredictor.kind` then says "torch").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSIFIER_TOL = 1e-4


def default_graph_dir() -> Path:
    from occtool.evaluation.eval_gallery import default_cache_dir

    return default_cache_dir() / "onnx"


class GraphPredictor:
    """A classifier checkpoint run as its exported graph (see the module doc); the `Predictor`
    protocol of `occtool.classify.predict`: probabilities(x float32 [B, 3, 224, 224]) -> [B, 3]."""

    kind = "onnx"

    def __init__(self, model, checkpoint: str | Path, *, threads: int, graph_dir: str | Path | None = None,
                 strict: bool = False) -> None:
        from occtool.data.images import file_sha1

        self.model = model.eval()
        self.threads = int(threads)
        self.strict = bool(strict)
        self.path = Path(graph_dir or default_graph_dir()) / f"classifier-{file_sha1(checkpoint)[:20]}.onnx"
        self.session = None
        self.fallback = None  # a TorchPredictor once auto gave up on the graph
        self.check: float | None = None  # max probability difference on the first batch
        self._guarded(self._export)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        from occtool.classify.export import INPUT_NAME, OUTPUT_NAME

        x = np.ascontiguousarray(x, np.float32)
        if self.session is None and self.fallback is None:
            self._open(x)
        if self.fallback is not None:
            return self.fallback.probabilities(x)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]

    def _open(self, x: np.ndarray) -> None:
        def check() -> None:
            self.session, self.check = self._checked_session(x)

        self._guarded(check)

    def _guarded(self, step) -> None:
        """Run `step`; on ExportError: raise it (onnxruntime) or run in PyTorch from now on (auto)."""
        from occtool.models.export import ExportError

        try:
            step()
        except ExportError:
            if self.strict:
                raise
            from occtool.classify.predict import TorchPredictor

            self.fallback, self.kind = TorchPredictor(self.model), "torch"

    def _export(self) -> None:
        """The graph file, unless the cache has it (ExportError with the exporter's reason)."""
        from occtool.classify.export import export_graph

        if not self.path.is_file():
            export_graph(self.model, self.path)

    def _checked_session(self, x: np.ndarray):
        """A session on the graph, compared with PyTorch on `x` and its mirror (a batch of >= 2
        exercises the dynamic batch); ExportError when they differ by CLASSIFIER_TOL or more."""
        from occtool.classify.export import INPUT_NAME, OUTPUT_NAME, torch_probabilities
        from occtool.models.export import ExportError
        from occtool.runtime import make_session

        session = make_session(self.path, threads=self.threads)
        check = np.ascontiguousarray(np.concatenate([x, x[..., ::-1]]))
        diff = float(np.abs(session.run([OUTPUT_NAME], {INPUT_NAME: check})[0]
                            - torch_probabilities(self.model, check)).max())
        if not diff < CLASSIFIER_TOL:
            raise ExportError(f"classifier {self.model.arch}: the exported graph disagrees with PyTorch "
                              f"(max probability difference {diff:.2e} >= {CLASSIFIER_TOL:g})")
        return session, diff
