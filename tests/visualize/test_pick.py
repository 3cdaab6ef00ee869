import csv
from pathlib import Path

import pytest
import yaml

from occtool.errors import ConfigError, DataError
from occtool.visualize.pick import pairs_from_eval, read_pairs_file

IDENT_FIELDS = ["method", "probe", "identity", "in_gallery", "rank", "genuine_score", "top1_identity", "top1_score", "top5"]


def _write_csv(path: Path, fields, rows):
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


@pytest.fixture
def ident_run(tmp_path):
    gal, prb, run = tmp_path / "gallery", tmp_path / "probes", tmp_path / "run"
    for ident in ("amy", "bob", "cat", "dan"):
        (gal / ident).mkdir(parents=True)
        (gal / ident / f"{ident}_2.jpg").write_bytes(b"x")
        (gal / ident / f"{ident}_1.jpg").write_bytes(b"x")  # first sorted: the one drawn
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"gallery_root": str(gal), "probe_root": str(prb)}))

    def row(m, probe, ident, rank, gen, top1, top1s, in_gallery=True):
        return {"method": m, "probe": probe, "identity": ident, "in_gallery": in_gallery, "rank": rank,
                "genuine_score": gen, "top1_identity": top1, "top1_score": top1s, "top5": top1}

    rows = [
        row("cosine", "amy/a.jpg", "amy", 1, 0.9, "amy", 0.9),
        row("cosine", "bob/b.jpg", "bob", 2, 0.2, "cat", 0.6),
        row("cosine_occ_matched", "amy/a.jpg", "amy", 1, 0.8, "amy", 0.8),
        row("cosine_occ_matched", "bob/b.jpg", "bob", 3, 0.1, "dan", 0.5),   # false match 0.5, miss 0.1
        row("cosine_occ_matched", "cat/c.jpg", "cat", 2, 0.3, "amy", 0.7),   # false match 0.7, miss 0.3
        row("cosine_occ_matched", "dan/d.jpg", "dan", 1, 0.4, "dan", 0.4),   # right, but a weak genuine
        row("cosine_occ_matched", "eve/e.jpg", "eve", "", "", "bob", 0.95, in_gallery=False),
    ]
    _write_csv(run / "scores.csv", IDENT_FIELDS, rows)
    return run, gal, prb


def test_from_eval_identification_picks_hardest(ident_run):
    run, gal, prb = ident_run
    specs, method = pairs_from_eval(run, worst=2)
    assert method == "cosine_occ_matched"  # preferred over cosine by default
    fm = [s for s in specs if s.kind == "false match"]
    miss = [s for s in specs if s.kind == "miss"]
    # false matches: wrong top-1, highest top-1 score first (an unknown probe counts too)
    assert [(s.probe, s.gallery) for s in fm] == [(prb / "eve/e.jpg", gal / "bob/bob_1.jpg"),
                                                  (prb / "cat/c.jpg", gal / "amy/amy_1.jpg")]
    # misses: in-gallery probes, lowest genuine score first, against their own identity
    assert [(s.probe, s.gallery) for s in miss] == [(prb / "bob/b.jpg", gal / "bob/bob_1.jpg"),
                                                    (prb / "cat/c.jpg", gal / "cat/cat_1.jpg")]
    assert "rank 3" in miss[0].note
    specs, method = pairs_from_eval(run, worst=1, method="cosine")
    assert method == "cosine" and [(s.probe.name, s.gallery.name) for s in specs] == [("b.jpg", "cat_1.jpg"),
                                                                                     ("b.jpg", "bob_1.jpg")]


def test_from_eval_errors(ident_run, tmp_path):
    run, _, _ = ident_run
    with pytest.raises(ConfigError, match="--worst 5: the run has only 4"):
        pairs_from_eval(run, worst=5)
    with pytest.raises(ConfigError, match="--method qaconv"):
        pairs_from_eval(run, worst=1, method="qaconv")
    with pytest.raises(DataError, match="no scores.csv"):
        pairs_from_eval(tmp_path / "nothing", worst=1)


def test_from_eval_pairs_mode(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    fields = ["fold", "same", "image_a", "image_b", "cosine", "qaconv_occ"]
    rows = [
        {"fold": 1, "same": 1, "image_a": "a1", "image_b": "a2", "cosine": 0.8, "qaconv_occ": 0.1},
        {"fold": 1, "same": 1, "image_a": "b1", "image_b": "b2", "cosine": 0.3, "qaconv_occ": 0.9},
        {"fold": 1, "same": 0, "image_a": "a1", "image_b": "b1", "cosine": 0.5, "qaconv_occ": 0.2},
        {"fold": 1, "same": 0, "image_a": "a2", "image_b": "c1", "cosine": 0.1, "qaconv_occ": 0.7},
    ]
    _write_csv(run / "scores.csv", fields, rows)
    specs, method = pairs_from_eval(run, worst=1)
    assert method == "qaconv_occ"
    assert [(s.kind, str(s.probe), str(s.gallery)) for s in specs] == [("false match", "a2", "c1"), ("miss", "a1", "a2")]
    specs, _ = pairs_from_eval(run, worst=1, method="cosine")
    assert [(str(s.probe), str(s.gallery)) for s in specs] == [("a1", "b1"), ("b1", "b2")]
    with pytest.raises(ConfigError, match="--worst 3"):
        pairs_from_eval(run, worst=3)


def test_read_pairs_file(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("# probe gallery\na.jpg b.jpg\n/abs/c.jpg,\td.jpg  # note\n\n")
    specs = read_pairs_file(f)
    assert [(s.probe, s.gallery) for s in specs] == [(tmp_path / "a.jpg", tmp_path / "b.jpg"),
                                                     (Path("/abs/c.jpg"), tmp_path / "d.jpg")]
    f.write_text("only_one.jpg\n")
    with pytest.raises(DataError, match="expected 'probe gallery'"):
        read_pairs_file(f)
