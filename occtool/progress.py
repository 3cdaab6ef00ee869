"""The progress-callback convention of the core: `progress(done, total)`; None means silent."""

from __future__ import annotations

from typing import Callable, Optional

ProgressFn = Optional[Callable[[int, int], None]]


def report(progress: ProgressFn, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)
