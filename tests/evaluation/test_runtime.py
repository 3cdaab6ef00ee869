"""Extraction through ONNX Runtime: the same Features as PyTorch on real faces, the cached graph,
the feature cache shared by both runtimes, the runtime choice and its errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from occtool.cli.app import run
from occtool.errors import ConfigError
from occtool.evaluation import extract_features
from occtool.models import FaceModel, build_backbone, default_weights
from occtool.models.export import ExportError
from occtool.runtime import resolve_runtime

FIELDS = ("embeddings", "occ_embeddings", "match_maps", "occlusion", "contributions", "visibility_views")


@pytest.fixture
def face_model(mobilefacenet_dir):
    torch.manual_seed(0)
    bb = build_backbone("mobilefacenet", weights=default_weights("mobilefacenet"))
    return FaceModel(backbone=bb, hidden_channels=16, neck_channels=32).eval()


def _paths(tree):
    return sorted(p for p in tree.rglob("*.jpg"))


def test_runtimes_agree_on_real_faces(face_model, tiny_tree):
    paths = _paths(tiny_tree)
    kw = dict(model=face_model, device="cpu", batch_size=3, with_contributions=True, threads=1)
    a = extract_features(paths, runtime="torch", **kw)
    b = extract_features(paths, runtime="onnxruntime", **kw)
    assert (a.runtime, b.runtime) == ("torch", "onnxruntime")
    assert a.ok_mask.all() and b.ok_mask.all()
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and x.dtype == y.dtype, name
        assert float((x - y).abs().max()) < 1e-4, name


def test_parallel_workers_give_the_same_features_in_the_same_rows(face_model, tiny_tree, tmp_path, monkeypatch):
    """threads=2: two data-parallel workers on one-thread sessions (`occtool.runtime.parallel`);
    every row must be the image's own, as with one thread, bad images included."""
    import occtool.runtime.parallel as parallel

    calls = []
    real = parallel.ordered_map
    monkeypatch.setattr(parallel, "ordered_map", lambda *a, **k: calls.append(k["workers"]) or real(*a, **k))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    paths = [*_paths(tiny_tree)[:3], bad, *_paths(tiny_tree)[3:]]
    kw = dict(model=face_model, device="cpu", batch_size=2, with_contributions=True, runtime="onnxruntime")
    one = extract_features(paths, threads=1, **kw)
    two = extract_features(paths, threads=2, **kw)
    assert calls == [2]
    assert one.ok_mask.tolist() == two.ok_mask.tolist() and not two.ok_mask[3] and two.errors == one.errors
    for name in FIELDS:
        assert torch.equal(getattr(one, name), getattr(two, name)), name


def test_bad_image_is_a_row_not_a_crash(face_model, tiny_tree, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    paths = [*_paths(tiny_tree)[:3], bad]
    f = extract_features(paths, model=face_model, device="cpu", batch_size=2, runtime="onnxruntime", threads=1)
    assert f.ok_mask.tolist() == [True, True, True, False] and "broken.jpg" in f.errors[0]
    assert float(f.embeddings[3].abs().sum()) == 0.0


def test_graph_and_features_cached_across_runtimes(face_model, tiny_tree, tmp_path):
    paths = _paths(tiny_tree)[:4]
    kw = dict(model=face_model, device="cpu", batch_size=4, cache_dir=tmp_path, model_key="k1", threads=1)
    a = extract_features(paths, runtime="onnxruntime", **kw)
    graph = tmp_path / "onnx" / "k1.onnx"
    assert graph.is_file() and (tmp_path / "onnx" / "k1.check.json").is_file()
    stamp = graph.stat().st_mtime_ns
    b = extract_features(paths, runtime="torch", **kw)  # the runtime is not part of the feature key
    assert b.cache_hits == 4 and b.runtime == "none (all cached)"
    assert torch.equal(a.embeddings, b.embeddings)
    more = _paths(tiny_tree)[4:6]
    c = extract_features(more, runtime="auto", **kw)  # reuses the cached, checked graph
    assert c.runtime == "onnxruntime" and graph.stat().st_mtime_ns == stamp



def test_auto_falls_back_when_the_model_does_not_export(face_model, tiny_tree, monkeypatch, tmp_path):
    from occtool.models import export as export_mod

    def refuse(model, path, **kw):
        raise ExportError("cannot export mobilefacenet to ONNX: test")

    monkeypatch.setattr(export_mod, "export_onnx", refuse)
    paths = _paths(tiny_tree)[:2]
    f = extract_features(paths, model=face_model, device="cpu", runtime="auto", threads=1, model_key="k",
                         graph_dir=tmp_path)
    assert f.runtime == "torch" and f.ok_mask.all()
    g = extract_features(paths, model=face_model, device="cpu", runtime="auto", threads=1)  # no fingerprint
    assert g.runtime == "torch"
    with pytest.raises(ExportError, match="cannot export"):
        extract_features(paths, model=face_model, device="cpu", runtime="onnxruntime", threads=1)


def test_resolve_runtime():
    assert resolve_runtime("torch", "cpu") == "torch"
    assert resolve_runtime("auto", "cpu") == "onnxruntime"
    assert resolve_runtime("auto", "cuda:0") == "torch"
    with pytest.raises(ConfigError, match="runs on the CPU"):
        resolve_runtime("onnxruntime", "cuda")
    with pytest.raises(ConfigError, match="runtime"):
        resolve_runtime("tensorrt", "cpu")


@pytest.mark.parametrize("flag,value,key", [("--runtime", "tensorrt", "runtime"), ("--threads", "0", "threads")])
def test_eval_gallery_bad_runtime_options(tmp_path, capsys, flag, value, key):
    out = tmp_path / "out"
    code = run(["eval-gallery", "--pairs", str(tmp_path / "p.txt"), "--root", str(tmp_path), "--backbone",
                "mobilefacenet", flag, value, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error:") and key in err and not out.exists()
