"""ONNX Runtime CPU sessions sized for the threads given."""

from __future__ import annotations

from pathlib import Path

from occtool.errors import OcctoolError


def ort_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def make_session(path: str | Path, *, threads: int = 1):
    """An `onnxruntime.InferenceSession` on the CPU: `threads` intra-op threads (one per core given),
    one inter-op thread, sequential execution, every graph optimisation."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise OcctoolError("onnxruntime is not installed (pip install onnxruntime), or use --runtime torch") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
