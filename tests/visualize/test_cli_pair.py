import csv
import json

import pytest
import yaml
from PIL import Image

from occtool.cli.app import run
from tests.visualize.conftest import write_faces


def _pair(*args):
    return run(["visualize-occlusion", "pair", *map(str, args)])


def test_one_pair_scores_every_method_like_the_engine_and_draws(checkpoint, tmp_path, capsys):
    from occtool.evaluation import evaluate_pairs, load_eval_model

    root = tmp_path / "lfw"
    a, b, _ = write_faces(root, ["amy/amy_0001.png", "amy/amy_0002.png", "bob/bob_0001.png"])
    out = tmp_path / "out"
    assert _pair(a, b, "--checkpoint", checkpoint, "--out", out, "--top-k", 5) == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    row = m["per_pair"][0]
    methods = ("cosine", "cosine_occ", "cosine_occ_matched", "qaconv", "qaconv_occ")
    assert set(m["mean_scores"]) == set(methods)
    # the per-location shares and the bias share add up to the visibility-matched score
    assert row["matched_location_share"] + row["matched_bias_share"] == pytest.approx(row["cosine_occ_matched"], abs=1e-5)
    # every score is the evaluation engine's (eval-gallery's pairs mode on the same two images)
    (tmp_path / "pairs.txt").write_text("1 1\namy\t1\t2\namy\t1\tbob\t1\n")
    ev = evaluate_pairs(tmp_path / "pairs.txt", root, em=load_eval_model(checkpoint=checkpoint))
    for meth in methods:
        assert row[meth] == pytest.approx(float(ev["rows"][0][meth]), abs=1e-4), meth
    figs = list((out / "pairs").iterdir())
    assert len(figs) == 1 and figs[0].stat().st_size > 20_000
    w, h = Image.open(figs[0]).size
    assert w > 800 and h > 600
    assert (out / "pairs.csv").is_file() and (out / "config.yaml").is_file()


def test_from_eval_draws_the_picked_pairs(checkpoint, tmp_path, capsys):
    gal, prb, runf = tmp_path / "gallery", tmp_path / "probes", tmp_path / "run"
    write_faces(gal, ["amy/amy_1.png", "bob/bob_1.png"])
    write_faces(prb, ["amy/amy_2.png", "bob/bob_2.png"], seed=1)
    runf.mkdir()
    (runf / "config.yaml").write_text(yaml.safe_dump({"gallery_root": str(gal), "probe_root": str(prb)}))
    fields = ["method", "probe", "identity", "in_gallery", "rank", "genuine_score", "top1_identity", "top1_score", "top5"]
    with (runf / "scores.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerow(dict(zip(fields, ["cosine", "amy/amy_2.png", "amy", True, 2, 0.1, "bob", 0.4, "bob|amy"])))
        w.writerow(dict(zip(fields, ["cosine", "bob/bob_2.png", "bob", True, 1, 0.6, "bob", 0.6, "bob|amy"])))
    out = tmp_path / "out"
    assert _pair("--from-eval", runf, "--worst", 1, "--checkpoint", checkpoint, "--out", out) == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["picked_by"] == "cosine" and m["pairs"] == 2
    assert [(r["kind"], r["probe"], r["gallery"]) for r in m["per_pair"]] == [
        ("false match", str(prb / "amy/amy_2.png"), str(gal / "bob/bob_1.png")),
        ("miss", str(prb / "amy/amy_2.png"), str(gal / "amy/amy_1.png")),
    ]
    assert len(list((out / "pairs").iterdir())) == 2
    assert _pair("--from-eval", runf, "--worst", 3, "--checkpoint", checkpoint, "--out", tmp_path / "o2") == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --worst 3")


def test_pair_error_paths(checkpoint, plain_weights, tmp_path, capsys):
    a, b = write_faces(tmp_path / "f", ["a.png", "b.png"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    cases = [
        ([a, tmp_path / "missing.png", "--checkpoint", checkpoint], "image not found"),
        ([a, b, "--checkpoint", plain_weights], "not an occtool checkpoint"),
        ([a, broken, "--checkpoint", checkpoint], "broken.jpg"),
        ([a, "--checkpoint", checkpoint], "both PROBE and GALLERY"),
        ([a, b, "--pairs", tmp_path / "p.txt", "--checkpoint", checkpoint], "not probe and pairs"),
    ]
    for n, (args, msg) in enumerate(cases):
        assert _pair(*args, "--out", tmp_path / f"o{n}") == 1, msg
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and msg in err[-1], err
