"""End to end on a tiny real tree (aligned LFW images, pretrained MobileFaceNet): make-protocol,
eval-gallery identification and pairs mode, metrics.json keys, cache reuse."""

import csv
import json

import pytest

from occtool.cli.app import run

PAIRS = """2\t2
Aaron_Peirsol\t1\t3
Abdullah_Gul\t1\t6
Aaron_Peirsol\t1\tAbdullah_Gul\t7
Abdullah_Gul\t6\tAdrien_Brody\t2
Adrien_Brody\t2\t3
Aaron_Peirsol\t3\t4
Adrien_Brody\t5\tAaron_Peirsol\t4
Abdullah_Gul\t7\tAdrien_Brody\t3
"""


@pytest.fixture
def mfn_weights(mobilefacenet_dir):
    return mobilefacenet_dir / "mobilefacenet.pt"


def test_make_protocol_and_identification(tiny_tree, mfn_weights, tmp_path):
    proto = tmp_path / "proto"
    assert run(["make-protocol", str(tiny_tree), "--out", str(proto)]) == 0
    doc = json.loads((proto / "protocol.json").read_text())
    assert doc["gallery_images"] == 3 and doc["probe_images"] == 6
    out = tmp_path / "ident"
    args = ["eval-gallery", "--gallery-root", str(proto / "gallery"), "--probe-root", str(proto / "probes"),
            "--backbone", "mobilefacenet", "--weights", str(mfn_weights), "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu", "--out", str(out)]
    assert run(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["methods"]) == ["cosine", "qaconv"]  # a plain backbone: no *_occ methods
    for block in m["methods"].values():
        for key in ("rank1", "rank5", "auc", "eer", "tar@far=1e-3", "tar@far=1e-2", "n_genuine", "n_impostor"):
            assert key in block
    assert m["methods"]["cosine"]["rank1"] == 1.0  # three different people, real pretrained model
    assert m["counts"]["probes_with_gallery_identity"] == 6
    assert m["overlap"]["probe_identities_missing_from_gallery"] == 0
    assert any("untrained" in n for n in m["notes"])
    with open(out / "scores.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and {r["method"] for r in rows} == {"cosine", "qaconv"}


def test_pairs_mode_and_cache_reuse(tiny_tree, mfn_weights, tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(PAIRS)
    out = tmp_path / "pairs_out"
    args = ["eval-gallery", "--pairs", str(pairs), "--root", str(tiny_tree), "--backbone", "mobilefacenet",
            "--weights", str(mfn_weights), "--methods", "cosine", "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu", "--out", str(out)]
    assert run(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["mode"] == "pairs"
    c = m["methods"]["cosine"]
    for key in ("acc_10fold", "acc_10fold_std", "auc", "eer", "tar@far=1e-3"):
        assert key in c
    assert c["auc"] == 1.0 and c["acc_10fold"] == 1.0
    assert m["counts"]["pairs_used"] == 8 and m["counts"]["folds"] == 2 and m["counts"]["cache_hits"] == 0
    assert run(args + ["--force"]) == 0
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["counts"]["cache_hits"] == m2["counts"]["images"] == 9
    assert m2["methods"]["cosine"] == c
