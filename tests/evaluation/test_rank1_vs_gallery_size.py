"""benchmarks/rank1_vs_gallery_size.py: the closed form against sampling sub-galleries."""

import numpy as np
import pytest

from tests.conftest import load_benchmark


def _module():
    return load_benchmark("rank1_vs_gallery_size")


def test_full_gallery_is_the_plain_rank1_and_size_one_is_one():
    mod = _module()
    ranks = [1, 1, 2, 5, 30]
    assert mod.expected_rank1(ranks, 30, 30) == pytest.approx(0.4)
    assert mod.expected_rank1(ranks, 30, 1) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mod.expected_rank1(ranks, 30, 31)


def test_closed_form_matches_sampled_sub_galleries():
    mod = _module()
    rng = np.random.default_rng(0)
    gallery, size, probes = 40, 8, 25
    scores = rng.normal(size=(probes, gallery))
    truth = rng.integers(0, gallery, probes)
    scores[np.arange(probes), truth] += 1.0  # genuine scores a little higher
    ranks = [int((scores[i] > scores[i, truth[i]]).sum()) + 1 for i in range(probes)]
    hits, trials = 0, 4000
    for _ in range(trials):
        i = int(rng.integers(probes))
        others = rng.choice(np.delete(np.arange(gallery), truth[i]), size - 1, replace=False)
        hits += scores[i, truth[i]] > scores[i, others].max()
    assert mod.expected_rank1(ranks, gallery, size) == pytest.approx(hits / trials, abs=0.025)


def test_reads_only_probes_in_the_gallery(tmp_path):
    mod = _module()
    f = tmp_path / "scores.csv"
    f.write_text("method,probe,identity,in_gallery,rank,genuine_score,top1_identity,top1_score,top5\n"
                 "cosine,a/1.jpg,a,True,1,0.9,a,0.9,a\n"
                 "cosine,b/1.jpg,b,False,0,0,a,0.5,a\n"
                 "qaconv,a/1.jpg,a,True,3,0.4,c,0.6,c|d|a\n")
    assert mod.read_ranks(str(f)) == {"cosine": [1], "qaconv": [3]}


def test_cli_leaves_out_sizes_above_the_gallery_and_refuses_a_too_small_gallery(tmp_path, monkeypatch, capsys):
    mod = _module()
    f = tmp_path / "scores.csv"
    f.write_text("method,probe,identity,in_gallery,rank,genuine_score,top1_identity,top1_score,top5\n"
                 "cosine,a/1.jpg,a,True,1,0.9,a,0.9,a\n"
                 "cosine,b/1.jpg,b,True,3,0.4,c,0.6,c|d|b\n")
    monkeypatch.setattr("sys.argv", ["x", str(f), "--gallery", "4", "--sizes", "2,100"])
    mod.main()
    header = capsys.readouterr().out.splitlines()[0]
    assert "m=2" in header and "m=4" in header and "m=100" not in header
    monkeypatch.setattr("sys.argv", ["x", str(f), "--gallery", "2"])
    with pytest.raises(SystemExit) as exc:
        mod.main()
    assert exc.value.code == 2 and "below a rank" in capsys.readouterr().err
