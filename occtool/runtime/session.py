"""ONNX Runtime CPU sessions sized for the threads given."""

from __future__ import annotations

import threading
from collections import OrderedDict
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


_CACHE_SIZE = 4
_SESSIONS: "OrderedDict[tuple, object]" = OrderedDict()
_LOCK = threading.Lock()


def cached_session(path: str | Path, *, threads: int = 1):
    """`make_session`, kept in this process for the next call on the same file (same path, size
    and modification time) and thread count: creating a session optimises the graph again (tens of
    ms, a noticeable share of a call that extracts a few hundred faces). The 4 most recent are kept;
    sessions are safe to run from several threads."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns, int(threads))
    with _LOCK:
        sess = _SESSIONS.get(key)
        if sess is not None:
            _SESSIONS.move_to_end(key)
            return sess
    sess = make_session(p, threads=threads)
    with _LOCK:
        _SESSIONS[key] = sess
        while len(_SESSIONS) > _CACHE_SIZE:
            _SESSIONS.popitem(last=False)
    return sess
