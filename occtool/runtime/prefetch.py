"""Decode ahead: the next item's input is prepared in a background thread while the caller runs
the network on the current one (image decoding releases the GIL, as do ONNX Runtime and torch)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetched(load: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
    """Yield (item, load(item)) in order, load(item k+1) running while the caller handles item k.
    `load` should return its failures as values: an exception it raises is raised here, at its item."""
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, items[0])
        for k, item in enumerate(items):
            result = pending.result()
            if k + 1 < len(items):
                pending = pool.submit(load, items[k + 1])
            yield item, result
