"""benchmarks/bench_extract.py runs end to end on a few real files (MobileFaceNet and RetinaFace)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_extract_main_tiny(capsys):
    from tests.conftest import shared_or_skip

    shared_or_skip("data", "lfw_aligned112", "images")
    shared_or_skip("data", "lfw", "images")
    shared_or_skip("weights", "retinaface_mnet025")
    spec = importlib.util.spec_from_file_location("bench_extract", ROOT / "benchmarks" / "bench_extract.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--images", "8", "--rounds", "1", "--threads", "1", "--detector", "3"])
    row, det = res["rows"][0], res["detector"][0]
    assert row["bare_ort"] > 0 and row["occtool_ort"] > 0 and row["occtool_torch"] > 0
    assert det["occtool_ort"] > 0 and det["align_ort"] > 0 and det["align_torch"] > 0 and det["threads"] == 1
    out = capsys.readouterr().out
    assert "RetinaFace" in out and "x bare" in out
