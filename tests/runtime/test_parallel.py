"""`occtool.runtime.parallel.ordered_map`: order, real concurrency, bounded work in flight, errors."""

from __future__ import annotations

import threading
import time

import pytest

from occtool.runtime.parallel import ordered_map


def test_keeps_the_order_of_the_items():
    def slow_first(i):
        time.sleep(0.02 if i == 0 else 0.0)  # the first item finishes last
        return i * i

    assert list(ordered_map(slow_first, range(7), workers=3)) == [(i, i * i) for i in range(7)]
    assert list(ordered_map(slow_first, [], workers=2)) == []


def test_runs_items_at_the_same_time():
    meet = threading.Barrier(2, timeout=5)  # each item waits for the other: serial execution would time out

    def work(i):
        meet.wait()
        return i

    assert [r for _, r in ordered_map(work, [0, 1], workers=2)] == [0, 1]


def test_at_most_window_items_started_ahead_of_the_consumer():
    lock, started = threading.Lock(), []

    def work(i):
        with lock:
            started.append(i)
        return i

    stream = ordered_map(work, range(20), workers=2, window=3)
    first = next(stream)
    time.sleep(0.05)  # let the pool run whatever was submitted
    assert first == (0, 0) and len(started) <= 3
    assert [i for i, _ in stream] == list(range(1, 20))


def test_an_error_is_raised_at_its_item_and_stops_the_rest():
    done = []

    def work(i):
        if i == 2:
            raise ValueError("bad item 2")
        done.append(i)
        return i

    seen = []
    with pytest.raises(ValueError, match="bad item 2"):
        for i, _ in ordered_map(work, range(50), workers=2, window=4):
            seen.append(i)
    assert seen == [0, 1] and len(done) < 50


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers"):
        list(ordered_map(abs, [1], workers=0))
