"""The QAConv benchmark's main() runs end to end at tiny sizes (so that it cannot rot)."""

from __future__ import annotations

import json

from tests.conftest import load_benchmark


def test_bench_qaconv_main_tiny(tmp_path, capsys):
    mod = load_benchmark("bench_qaconv")
    out = tmp_path / "bench.json"
    res = mod.main([
        "--quick", "--configs", "3x5,2x40", "--rounds", "1", "--channels", "8", "--size", "3",
        "--accuracy-ids", "6", "--memory-probes", "2", "--memory-gallery", "5,20", "--json", str(out),
    ])
    text = capsys.readouterr().out
    for key in ("pairs/s", "occlusion-aware / plain", "naive formula", "GEMM", "reduced precision", "peak RSS"):
        assert key in text
    assert [r["G"] for r in res["throughput"]] == [5, 40]
    row = res["throughput"][0]
    assert set(row["best_s"]) >= {"gemm", "plain", "folded", "naive"}
    assert row["all_ones_equals_plain_exactly"] and row["max_abs_diff_folded_vs_naive"] < 1e-5
    assert res["precision"]["identities"] == 6
    assert len(res["memory"]) == 2 and all(m["peak_rss_mb"] > 0 for m in res["memory"])
    assert json.loads(out.read_text())["throughput"][1]["P"] == 2


def test_bench_matched_main_tiny(capsys):
    mod = load_benchmark("bench_matched")
    res = mod.main(["--probes", "3", "--gallery", "5", "--naive-probes", "2", "--rounds", "1"])
    text = capsys.readouterr().out
    for key in ("pairs/s", "faster than the naive", "qaconv_occ", "contributions"):
        assert key in text
    assert res["max_abs_diff_vs_naive"] < 1e-4 and set(res["pairs_per_s"]) == {"cosine_occ", "matched", "qaconv_occ", "naive"}
    assert res["gemms_per_round"] >= 1 and "of the GEMM rate (per round" in text
    for key in ("matched_vs_gemm", "matched_vs_gemm_paired", "matched_vs_gemm_cpu_time", "matched_vs_gemm_short"):
        assert res[key] > 0
