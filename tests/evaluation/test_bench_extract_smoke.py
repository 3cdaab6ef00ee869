"""benchmarks/bench_extract.py runs end to end on a few real files (MobileFaceNet and RetinaFace)."""

from __future__ import annotations

from tests.conftest import load_benchmark, shared_or_skip


def test_bench_extract_main_tiny(capsys):
    shared_or_skip("data", "lfw_aligned112", "images")
    shared_or_skip("data", "lfw", "images")
    shared_or_skip("weights", "retinaface_mnet025")
    mod = load_benchmark("bench_extract")
    res = mod.main(["--images", "8", "--rounds", "1", "--threads", "1", "--detector", "3"])
    row, det = res["rows"][0], res["detector"][0]
    assert row["bare_ort"] > 0 and row["occtool_ort"] > 0 and row["occtool_torch"] > 0
    assert row["bare_batch"] in (1, 8, 32) and row["ort_vs_bare_paired"] > 0 and det["ort_vs_bare_paired"] > 0
    assert det["occtool_ort"] > 0 and det["align_ort"] > 0 and det["align_torch"] > 0 and det["threads"] == 1
    out = capsys.readouterr().out
    assert "RetinaFace" in out and "x bare" in out
