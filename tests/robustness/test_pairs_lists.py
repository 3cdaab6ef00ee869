"""Plain-list pairs files (no header, same/different lines mixed): deterministic balanced folds
(`--folds-of N`), and the table says how many folds were used."""

from __future__ import annotations

from occtool.cli.eval_gallery import print_table
from occtool.evaluation.pairs import read_pairs

LINES = ["Ann 1 2", "Ann 1 Bob 1", "Bob 1 2", "Cid 1 2", "Bob 2 Cid 1", "Ann 2 Cid 2",
         "Dan 1 2", "Dan 1 Ann 1", "Cid 1 Dan 2", "Eve 1 2", "Eve 1 Ann 2", "Eve 2 3"]


def test_plain_list_folds_are_balanced_and_deterministic(tmp_path):
    f = tmp_path / "list.txt"
    f.write_text("\n".join(LINES) + "\n")
    pairs = read_pairs(f, folds_of=3)
    assert [p.same for p in pairs] == [len(x.split()) == 3 for x in LINES]  # file order kept
    for fold in range(3):
        assert sum(p.same for p in pairs if p.fold == fold) == 2
        assert sum(not p.same for p in pairs if p.fold == fold) == 2
    assert pairs == read_pairs(f, folds_of=3)
    assert {p.fold for p in read_pairs(f, folds_of=10)} == set(range(6))  # 6 lines of each kind: 6 folds


def test_table_names_the_fold_count(capsys):
    metrics = {"mode": "pairs", "counts": {"pairs_used": 12, "folds": 3, "bad_images": 0},
               "methods": {"cosine": {"acc_10fold": 0.9, "acc_10fold_std": 0.01, "tar@far=1e-3": 0.5,
                                      "eer": 0.1, "auc": 0.95}}}
    print_table(metrics)
    out = capsys.readouterr().out
    assert "3-fold" in out and "10-fold" not in out
