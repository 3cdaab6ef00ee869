"""Data-parallel inference on the CPU: `workers` threads, each running whole items (decode,
network, post-processing) through single-threaded sessions.

Why threads of one-thread calls rather than one call with `workers` intra-op threads: a face
network on one image (or a small batch) has little work per operator to split, so a second
intra-op thread adds little (RetinaFace on a 250x250 photo: 1.1x) and its pool competes with any
decoding thread for the same cores; two one-thread calls side by side keep both cores busy
(1.5-2x). ONNX Runtime, cv2 and torch release the GIL while they work, and an ONNX Runtime
session may be run from several threads at once.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int,
                window: int | None = None) -> Iterator[tuple[T, R]]:
    """Yield (item, fn(item)) in the items' order, `fn` running on `workers` threads with at most
    `window` items (default 2 per worker) started and not yet yielded, so memory stays bounded
    however slow the consumer. `fn` should return its failures as values: an exception it raises
    is raised here, at its item, and the items not started are dropped."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    window = max(1, window or 2 * workers)
    it = iter(items)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="occtool-infer")
    pending: deque = deque()
    try:
        for item in it:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= window:
                head, fut = pending.popleft()
                yield head, fut.result()
        while pending:
            head, fut = pending.popleft()
            yield head, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
