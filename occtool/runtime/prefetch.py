"""Decode ahead: the next item's input is prepared in a background thread while the caller runs
the network on the current one (image decoding releases the GIL, as do ONNX Runtime and torch)."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

from occtool.runtime.parallel import ordered_map

T = TypeVar("T")
R = TypeVar("R")


def prefetched(load: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
    """Yield (item, load(item)) in order, load(item k+1) running while the caller handles item k:
    `ordered_map` with one worker and one item ahead. `load` should return its failures as values:
    an exception it raises is raised here, at its item."""
    return ordered_map(load, items, workers=1, window=2)
