"""Which runtime runs a face model, and the model's exported graph for ONNX Runtime.

`auto` = ONNX Runtime on the CPU when it is installed and the model exports (checked against
PyTorch), PyTorch otherwise (and always on CUDA: the onnxruntime package is CPU-only here).

The exported graph of a model with a fingerprint (`occtool.evaluation.model_identity`) is cached
as `<cache_dir>/onnx/<fingerprint>.onnx`, beside the feature cache, with `<fingerprint>.check.json`
holding the max abs difference per output measured on the first batch it was used for. A model
without a fingerprint (random weights) is exported to a temporary folder for the one run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from occtool.config import check_choice
from occtool.errors import ConfigError

RUNTIMES = ("torch", "onnxruntime", "auto")


def resolve_runtime(runtime: str, device) -> str:
    """'torch' or 'onnxruntime' for the requested runtime on `device` (see the module doc)."""
    from occtool.runtime.session import ort_available

    check_choice("runtime", runtime, RUNTIMES)
    on_cpu = str(device).startswith("cpu")
    if runtime == "onnxruntime":
        if not on_cpu:
            raise ConfigError(f"runtime onnxruntime runs on the CPU; use --device cpu or --runtime torch (device {device})")
        if not ort_available():
            raise ConfigError("runtime onnxruntime: the onnxruntime package is not installed")
        return "onnxruntime"
    if runtime == "auto":
        return "onnxruntime" if on_cpu and ort_available() else "torch"
    return "torch"


@dataclass
class OnnxGraph:
    """An exported model loaded in ONNX Runtime: `run(x [B, 3, H, W] float32 numpy)` -> dict of
    the outputs (`occtool.models.export` names) as float32 numpy arrays."""

    path: Path
    session: object
    names: tuple[str, ...]
    check: dict = field(default_factory=dict)  # output -> max abs diff against PyTorch
    _tmp: str | None = None  # temporary folder to remove on close

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        from occtool.models.export import INPUT_NAME

        out = self.session.run(None, {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(self.names, out))

    def close(self) -> None:
        self.session = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def onnx_graph_for(model, *, check_inputs, threads: int, graph_dir: str | Path | None = None,
                   fingerprint: str | None = None, tol: float | None = None, stage: bool = False) -> OnnxGraph:
    """The model's graph in ONNX Runtime: exported (or found in the cache) and checked against
    PyTorch on `check_inputs` (a preprocessed batch [B, 3, H, W] of real faces, or a function
    returning one, called only when a check is needed; None: no faces to check on, no graph). ExportError when
    the model does not export or its graph disagrees beyond `tol` (default 1e-4). The graph is
    kept as `<graph_dir>/<fingerprint>.onnx` when both are given (else in a temporary folder);
    the fingerprint should name the outputs (`stage`: a Backbone's graph with its stage map too),
    and a kept graph whose outputs are not the expected ones is exported again."""
    from occtool.models.export import DEFAULT_TOL, check_onnx, export_onnx, output_names
    from occtool.runtime.session import cached_session, make_session

    tol = DEFAULT_TOL if tol is None else tol
    names = output_names(model, stage=stage)
    tmp = None
    if graph_dir is not None and fingerprint is not None:
        path = Path(graph_dir) / f"{fingerprint}.onnx"
    else:
        tmp = tempfile.mkdtemp(prefix="occtool-onnx-")
        path = Path(tmp) / "model.onnx"
    check_file = path.with_suffix(".check.json")
    check = _read_check(check_file, tol, names)
    if check is None:
        if callable(check_inputs):
            check_inputs = check_inputs()
        if check_inputs is None:
            from occtool.models.export import ExportError

            raise ExportError("no image decodes: nothing to check the exported graph on")
        if not path.is_file() or _graph_outputs(path) != names:
            export_onnx(model, path, stage=stage)
        check = check_onnx(model, path, check_inputs, tol=tol, threads=threads, stage=stage)
        if tmp is None:
            from occtool.io import atomic_write_json

            atomic_write_json(check_file, {"tol": tol, "max_abs_diff": check})
    session = make_session(path, threads=threads) if tmp else cached_session(path, threads=threads)
    return OnnxGraph(path=path, session=session, names=names, check=check, _tmp=tmp)


def _graph_outputs(path: Path) -> tuple[str, ...] | None:
    """The output names of the graph file (None: unreadable)."""
    from occtool.models.export import ExportError, read_metadata

    try:
        return tuple(read_metadata(path)["outputs"])
    except ExportError:
        return None


def _read_check(path: Path, tol: float, names: tuple[str, ...]) -> dict | None:
    """A recorded check of exactly the outputs `names` that passed at `tol` or tighter (None: check again)."""
    try:
        data = json.loads(path.read_text())
        diffs = data["max_abs_diff"]
        if path.with_suffix("").with_suffix(".onnx").is_file() and float(data["tol"]) <= tol \
                and set(diffs) == set(names) and all(float(d) <= tol for d in diffs.values()):
            return diffs
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None
