"""Defect 9: out-of-range values are refused with the range, before anything is written."""

from __future__ import annotations

import pytest

from occtool.cli.app import run
from tests.robustness.conftest import one_error_line

CASES = [
    (["train", "--epochs", "-1"], "schedule.epochs: expected a number >= 1, got -1"),
    (["eval-gallery", "--threshold", "nan"], "threshold: expected a finite number or null, got nan"),
    (["align", "--score-threshold", "2"], "score_threshold: expected a number in [0.0, 1.0], got 2.0"),
    (["eval-gallery", "--shortlist-k", "-1"], "shortlist_k: expected a number >= 0 or null, got -1"),
    (["eval-gallery", "--folds-of", "0"], "folds_of: expected a number >= 1, got 0"),
    (["eval-gallery", "--vis-exponent", "0"], "visibility_exponent: expected a number > 0.0, got 0.0"),
    (["train", "--set", "validation.visibility_exponent=-0.5"], "validation.visibility_exponent: expected a number > 0.0, got -0.5"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_out_of_range_is_refused_with_the_range(args, message, synth_tree, tmp_path, capsys):
    out = tmp_path / "out"
    where = {"train": ["--data", str(synth_tree)], "align": [str(synth_tree)],
             "eval-gallery": ["--pairs", str(tmp_path / "p.txt"), "--root", str(synth_tree),
                              "--backbone", "mobilefacenet"]}[args[0]]
    assert run([args[0], *where, *args[1:], "--out", str(out)]) == 1
    assert one_error_line(capsys.readouterr().err) == f"error: {message}"
    assert not out.exists()


def test_default_weights_for_a_backbone_without_them_is_refused(synth_tree, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", "--data", str(synth_tree), "--backbone", "ir18", "--weights", "default",
                "--out", str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("error: model.weights:") and "ir18 ships no default weights" in line
    assert not out.exists()
