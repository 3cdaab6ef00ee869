from tests.conftest import load_benchmark


def test_bench_classify_main_tiny(tmp_path, random_checkpoint, capsys):
    mod = load_benchmark("bench_classify")
    rows = mod.main(["--model", str(random_checkpoint), "--rounds", "1", "--json", str(tmp_path / "b.json")])
    assert len(rows) == 1 and rows[0]["arch"] == "mobilenet_v3_small"
    for key in ("torch_b1_ms", "onnx_b1_ms", "torch_b32_ms", "onnx_b32_ms"):
        assert rows[0][key] > 0
    assert rows[0]["max_prob_diff"] < 1e-4
    assert "onnx b32" in capsys.readouterr().out and (tmp_path / "b.json").is_file()
