"""pairs.txt parsing, fold selection, protocols (gallery/probe split) and leakage checks."""

import json

import numpy as np
import pytest
from PIL import Image

from occtool.errors import DataError
from occtool.evaluation.leakage import LeakageError, check_content_leakage, overlap_report
from occtool.evaluation.pairs import locate_pair_images, parse_folds, people_in_folds, read_pairs
from occtool.evaluation.protocol import build_protocol, write_protocol_trees

PAIRS = """2\t2
Ann\t1\t2
Bob\t1\t3
Ann\t1\tBob\t2
Bob\t3\tCal\t1
Dan\t1\t2
Dan\t2\t3
Eve\t1\tDan\t3
Cal\t1\tEve\t1
"""


def _img(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((112, 112, 3), value, np.uint8)
    arr[value % 112, :, 0] = 255  # every image different content
    Image.fromarray(arr).save(path)


def _lfw_like(root, suffix=".jpg"):
    counts = {"Ann": 2, "Bob": 3, "Cal": 1, "Dan": 3, "Eve": 1}
    v = 1
    for name, n in counts.items():
        for i in range(1, n + 1):
            _img(root / name / f"{name}_{i:04d}{suffix}", v)
            v += 7
    return root


def test_read_pairs(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text(PAIRS)
    pairs = read_pairs(f)
    assert len(pairs) == 8
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert [p.fold for p in pairs] == [0] * 4 + [1] * 4
    assert pairs[0].rel_stem_a == "Ann/Ann_0001" and pairs[0].rel_stem_b == "Ann/Ann_0002"
    assert pairs[3].rel_stem_a == "Bob/Bob_0003" and pairs[3].rel_stem_b == "Cal/Cal_0001"
    assert people_in_folds(pairs, [1]) == {"Dan", "Eve", "Cal"}
    assert people_in_folds(pairs, None) == {"Ann", "Bob", "Cal", "Dan", "Eve"}


def test_read_pairs_errors(tmp_path):
    f = tmp_path / "p.txt"
    with pytest.raises(DataError, match="not found"):
        read_pairs(f)
    f.write_text("2 2\nAnn 1 2\n")
    with pytest.raises(DataError, match="header says"):
        read_pairs(f)
    f.write_text("1 1\nAnn 1 Bob 2\nAnn 1 2\n")  # same/different lines swapped
    with pytest.raises(DataError, match="line 2"):
        read_pairs(f)
    f.write_text("1 1\nAnn x 2\nAnn 1 Bob 2\n")
    with pytest.raises(DataError, match="integers"):
        read_pairs(f)
    f.write_text("1\nAnn 1 2\nAnn 1 Bob 2\n")  # View-1 style one-number header
    assert len(read_pairs(f)) == 2


def test_parse_folds():
    assert parse_folds("6-10", 10) == [5, 6, 7, 8, 9]
    assert parse_folds("1,3,5-6") == [0, 2, 4, 5]
    assert parse_folds(None) is None
    with pytest.raises(DataError):
        parse_folds("0-3", 10)
    with pytest.raises(DataError):
        parse_folds("9-11", 10)
    with pytest.raises(DataError):
        parse_folds("a-b")


def test_locate_pair_images_any_extension_and_root_b(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text(PAIRS)
    pairs = read_pairs(f)
    root = _lfw_like(tmp_path / "lfw" / "images")  # found under <root>/images too
    occl = _lfw_like(tmp_path / "occ", suffix=".png")
    a, b, missing = locate_pair_images(pairs, tmp_path / "lfw", occl)
    assert not missing
    assert a[0] == root / "Ann" / "Ann_0001.jpg"
    assert b[0] == occl / "Ann" / "Ann_0002.png"
    (occl / "Eve" / "Eve_0001.png").unlink()
    _, _, missing = locate_pair_images(pairs, root, occl)
    assert missing == [f"{occl}/Eve/Eve_0001.*"]


def test_build_protocol_first_image_and_folds(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text(PAIRS)
    src = _lfw_like(tmp_path / "lfw")
    proto = build_protocol(src)
    assert [str(r.relpath) for r in proto.gallery] == [
        "Ann/Ann_0001.jpg", "Bob/Bob_0001.jpg", "Cal/Cal_0001.jpg", "Dan/Dan_0001.jpg", "Eve/Eve_0001.jpg"]
    assert len(proto.probes) == 1 + 2 + 2
    proto = build_protocol(src, pairs_file=f, folds="2")
    assert {r.identity for r in proto.gallery} == {"Cal", "Dan", "Eve"}
    assert [str(r.relpath) for r in proto.probes] == ["Dan/Dan_0002.jpg", "Dan/Dan_0003.jpg"]
    assert proto.info["people_in_folds"] == 3
    with pytest.raises(DataError, match="needs --pairs"):
        build_protocol(src, folds="2")


def test_build_protocol_probe_source_and_write(tmp_path):
    src = _lfw_like(tmp_path / "lfw")
    occ = _lfw_like(tmp_path / "aug" / "images", suffix=".png")  # augment layout: DST/images/<rel>
    proto = build_protocol(src, probe_source=tmp_path / "aug")
    assert all(r.path.suffix == ".png" and str(r.path).startswith(str(occ)) for r in proto.probes)
    assert all(r.path.suffix == ".jpg" for r in proto.gallery)
    doc = write_protocol_trees(proto, tmp_path / "out")
    assert (tmp_path / "out" / "gallery" / "Ann" / "Ann_0001.jpg").is_symlink()
    assert (tmp_path / "out" / "probes" / "Dan" / "Dan_0003.png").is_symlink()
    saved = json.loads((tmp_path / "out" / "protocol.json").read_text())
    assert saved["gallery_images"] == 5 and saved["probe_images"] == 5 == len(doc["probes"])
    (occ / "Dan" / "Dan_0003.png").unlink()
    with pytest.raises(DataError, match="no counterpart"):
        build_protocol(src, probe_source=tmp_path / "aug")
    proto = build_protocol(src, probe_source=tmp_path / "aug", allow_missing=True)
    assert proto.info["probes_missing_in_source"] == 1 and len(proto.probes) == 4
    write_protocol_trees(proto, tmp_path / "copies", copy=True)
    assert not (tmp_path / "copies" / "gallery" / "Ann" / "Ann_0001.jpg").is_symlink()


def test_leakage_same_content_under_two_names():
    check_content_leakage(["a", "b"], ["c", None])  # fine
    with pytest.raises(LeakageError, match="byte-identical"):
        check_content_leakage(["a", "b"], ["c", "b"], ["g/x.jpg", "g/y.jpg"], ["p/z.jpg", "p/renamed.jpg"])


def test_overlap_report_counts_missing_identities():
    rep = overlap_report(["a", "b", "c"], ["a", "a", "d", "d", "e"], ["h1", "h2", "h2"], ["x", "y", "z", "w", "v"])
    d = rep.as_dict()
    assert d["shared_identities"] == 1
    assert d["probe_identities_missing_from_gallery"] == 2
    assert d["probes_of_missing_identities"] == 3
    assert d["gallery_only_identities"] == 2
    assert d["duplicate_images_within_gallery"] == 1
