"""Inference runtimes: PyTorch or ONNX Runtime for the forward pass of a face model.

- `threads`: how many intra-op threads a runtime may use (`default_threads`: OMP_NUM_THREADS, else
  the cores this process may run on), and `torch_threads`, a scoped torch thread count.
- `session`: `make_session(path, threads=...)`, an ONNX Runtime CPU session (one intra-op thread
  per core given, sequential execution), `cached_session` (the same, kept for the next call on
  the same file), and `ort_available()`.
- `parallel`: `ordered_map(fn, items, workers=N)`, N threads running whole items (decode + one-thread
  network calls), results in order; `prefetch`: `prefetched(load, items)`, its one-worker case: the
  next item decoded in a background thread while the caller runs the network on the current one.
- `select`: `resolve_runtime("torch" | "onnxruntime" | "auto", device)` and `onnx_graph_for(...)`,
  the model's exported graph, cached beside the feature cache and checked against PyTorch.
"""

from occtool.runtime.select import RUNTIMES, OnnxGraph, onnx_graph_for, resolve_runtime
from occtool.runtime.prefetch import prefetched
from occtool.runtime.session import cached_session, make_session, ort_available
from occtool.runtime.threads import default_threads, torch_threads

__all__ = ["RUNTIMES", "OnnxGraph", "cached_session", "default_threads", "make_session", "onnx_graph_for",
           "ort_available", "prefetched", "resolve_runtime", "torch_threads"]
