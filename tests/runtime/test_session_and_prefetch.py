"""occtool.runtime: cached ONNX Runtime sessions (reused per file and thread count, renewed when
the file changes), decode-ahead order and errors, the prefetch setting."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from occtool.runtime.prefetch import prefetched


def _tiny_graph(path):
    from occtool.models.export import export_module

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    export_module(net, path, example=torch.zeros(1, 3, 8, 8), output_names=["y"],
                  dynamic_axes={"input": {0: "batch"}}, metadata={"occtool_kind": "test"}, what="tiny")
    return path


def test_cached_session_is_reused_per_file_and_threads(tmp_path):
    pytest.importorskip("onnxruntime")
    from occtool.runtime.session import cached_session

    path = _tiny_graph(tmp_path / "a.onnx")
    s1 = cached_session(path, threads=1)
    assert cached_session(path, threads=1) is s1
    assert cached_session(path, threads=2) is not s1
    _tiny_graph(path)  # re-exported: a new file (size/mtime), a new session
    os.utime(path, ns=(1, 1))
    assert cached_session(path, threads=1) is not s1


def test_prefetched_keeps_order_and_loads_ahead():
    seen = []
    main = threading.get_ident()

    def load(i):
        seen.append(threading.get_ident() != main)
        return i * i

    assert list(prefetched(load, range(6))) == [(i, i * i) for i in range(6)]
    assert all(seen) and list(prefetched(load, [])) == []


def test_prefetched_raises_at_the_failing_item():
    def load(i):
        if i == 2:
            raise ValueError("bad item")
        return i

    got = []
    with pytest.raises(ValueError, match="bad item"):
        for item, value in prefetched(load, range(5)):
            got.append(value)
    assert got == [0, 1]


def test_prefetch_setting(monkeypatch):
    from occtool.evaluation import extract
    from occtool.runtime import threads

    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    assert extract._prefetch(1) and extract._prefetch(2)  # the default: always
    monkeypatch.setattr(extract, "PREFETCH", "auto")  # only with a free core
    assert extract._prefetch(1) and not extract._prefetch(2)
    monkeypatch.setattr(extract, "PREFETCH", False)
    assert not extract._prefetch(1)
