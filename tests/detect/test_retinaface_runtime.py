"""RetinaFace through ONNX Runtime: the same detections as PyTorch on real photos; the graph is
cached per weights file; a graph that disagrees falls back (auto) or is an error (onnxruntime)."""

from __future__ import annotations

import numpy as np
import pytest

from occtool.data.images import read_image_rgb
from occtool.errors import ConfigError
from occtool.models.export import ExportError

RAW = ("Aaron_Peirsol", "Abdullah_Gul")


@pytest.fixture
def photos():
    from tests.conftest import shared_or_skip

    root = shared_or_skip("data", "lfw", "images")
    shared_or_skip("weights", "retinaface_mnet025")
    return [read_image_rgb(sorted((root / p).iterdir())[0]) for p in RAW]


def test_same_detections_as_torch(photos, tmp_path):
    from occtool.detect import RetinaFaceDetector

    ref = RetinaFaceDetector(runtime="torch")
    ort = RetinaFaceDetector(runtime="onnxruntime", graph_dir=tmp_path)
    assert ort.runtime == "onnxruntime"
    for img in photos:
        a, b = ref.detect(img), ort.detect(img)
        assert len(a) == len(b) >= 1
        for da, db in zip(a, b):
            assert abs(da.score - db.score) < 1e-4
            assert np.abs(da.box - db.box).max() < 1e-2 and np.abs(da.landmarks - db.landmarks).max() < 1e-2
    graphs = list(tmp_path.glob("retinaface-*.onnx"))
    assert len(graphs) == 1 and max(ort._graph.check.values()) < 1e-3
    again = RetinaFaceDetector(runtime="auto", graph_dir=tmp_path)  # reuses the cached graph
    stamp = graphs[0].stat().st_mtime_ns
    again.detect(photos[0])
    assert again.runtime == "onnxruntime" and graphs[0].stat().st_mtime_ns == stamp


def test_disagreeing_graph_falls_back_or_fails(photos, tmp_path, monkeypatch):
    from occtool.detect import RetinaFaceDetector, graph

    monkeypatch.setattr(graph, "DETECTOR_TOL", -1.0)  # nothing can agree
    auto = RetinaFaceDetector(runtime="auto", graph_dir=tmp_path)
    assert len(auto.detect(photos[0])) >= 1 and auto.runtime == "torch"
    strict = RetinaFaceDetector(runtime="onnxruntime", graph_dir=tmp_path)
    with pytest.raises(ExportError, match="disagrees"):
        strict.detect(photos[0])


def test_onnxruntime_on_cuda_is_a_config_error():
    from occtool.runtime import resolve_runtime

    with pytest.raises(ConfigError, match="CPU"):
        resolve_runtime("onnxruntime", "cuda:0")
