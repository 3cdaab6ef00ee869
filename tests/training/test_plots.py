"""validation_curves.png for both training commands' history keys."""

from __future__ import annotations

from occtool.training.plots import plot_validation, validation_series

TRAIN_ROWS = [
    {"kind": "epoch", "epoch": 1, "clean/cosine/rank1": 0.9, "masked/cosine/rank1": 0.7,
     "masked/qaconv_occ/rank1": 0.6, "masked/cosine/tar@far=1e-3": 0.5},
    {"kind": "step", "epoch": 1, "loss": 2.0},
    {"kind": "epoch", "epoch": 2, "clean/cosine/rank1": 0.95, "masked/cosine/rank1": 0.75},
]
FINETUNE_ROWS = [
    {"kind": "epoch", "epoch": 0, "clean/rank1": 0.99, "occlusion/rank1": 0.88, "low_res/rank1": 0.54,
     "train/pair_similarity": 0.5},
    {"kind": "epoch", "epoch": 1, "clean/rank1": 0.98, "occlusion/rank1": 0.90, "low_res/rank1": 0.60},
]


def test_train_keys_give_a_line_per_method():
    s = validation_series(TRAIN_ROWS)
    assert list(s) == ["clean", "masked"]
    assert s["masked"]["cosine"] == ([1, 2], [70.0, 75.0]) and s["masked"]["qaconv_occ"] == ([1], [60.0])


def test_finetune_keys_give_a_panel_per_probe_set(tmp_path):
    s = validation_series(FINETUNE_ROWS)
    assert sorted(s) == ["clean", "low_res", "occlusion"]
    assert s["occlusion"] == {"rank-1": ([0, 1], [88.0, 90.0])}
    assert plot_validation(FINETUNE_ROWS, tmp_path / "v.png") == tmp_path / "v.png"
    assert (tmp_path / "v.png").stat().st_size > 1000


def test_nothing_to_plot_writes_nothing(tmp_path):
    assert plot_validation([{"kind": "step", "loss": 1.0}], tmp_path / "v.png") is None
    assert not (tmp_path / "v.png").exists()
