"""Thread counts: one intra-op thread per core given, never more (the machine is shared)."""

from __future__ import annotations

import os
from contextlib import contextmanager

from occtool.errors import ConfigError


def default_threads() -> int:
    """OMP_NUM_THREADS when set to a positive integer, else the cores this process may run on."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ConfigError(f"OMP_NUM_THREADS: expected a positive integer, got {env!r}") from None
        if n >= 1:
            return n
    return available_cores()


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    if threads is None:
        return default_threads()
    if int(threads) < 1:
        raise ConfigError(f"threads: expected an integer >= 1, got {threads}")
    return int(threads)


@contextmanager
def torch_threads(threads: int):
    """torch.set_num_threads(threads) for the duration of the block."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
