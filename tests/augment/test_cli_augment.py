"""`occtool augment` end to end: outputs, manifest, determinism, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from occtool.augment import feature_mask, read_visibility_png
from occtool.cli.app import run
from occtool.data.images import read_image_rgb
from occtool.data.landmarks import template_for_size, write_landmarks

OUTPUT_DIRS = ("images", "masks", "masks7")


def tree_bytes(out: Path) -> dict[str, bytes]:
    """Every deterministic output file (metrics.json has timings, config.yaml the worker count)."""
    files = {}
    for sub in OUTPUT_DIRS:
        for p in sorted((out / sub).rglob("*")):
            if p.is_file():
                files[p.relative_to(out).as_posix()] = p.read_bytes()
    for name in ("manifest.jsonl", "skipped.txt"):
        files[name] = (out / name).read_bytes()
    return files


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_end_to_end_on_tiny_tree(tiny_tree: Path, tmp_path: Path, capsys):
    out = tmp_path / "aug"
    argv = ["augment", str(tiny_tree), "--out", str(out), "--workers", "2", "--seed", "3", "--copies", "2"]
    assert run(argv + ["--keep-clean", "0.2"]) == 0
    sources = sorted(p.relative_to(tiny_tree).as_posix() for p in tiny_tree.glob("*/*"))
    rows = manifest(out)
    assert len(rows) == 2 * len(sources) == 18
    assert [r["source"] for r in rows] == [s for s in sources for _ in range(2)]
    for row in rows:
        assert row["identity"] == row["source"].split("/")[0]
        assert row["output"].startswith("images/") and row["output"].endswith(f"_c{row['copy']}.png")
        assert row["occlusion_class"] in ("none", "opaque", "transparent")
        assert (row["occluder"] == "none") == (row["occlusion_class"] == "none")
        assert isinstance(row["seed"], int) and "keypoint_visibility" not in row
        src = read_image_rgb(tiny_tree / row["source"])
        img = read_image_rgb(out / row["output"])
        vis = read_visibility_png(out / row["mask"])
        assert img.shape == src.shape and vis.shape == src.shape[:2]
        # lossless PNG output: the stored pixels changed exactly where the stored mask < 255
        np.testing.assert_array_equal(np.any(img != src, axis=2), vis < 1)
        m7 = np.load(out / row["mask7"])
        assert m7.shape == (7, 7) and m7.dtype == np.float32
        np.testing.assert_allclose(m7, feature_mask(vis), atol=1e-7)
        assert row["occluded_fraction"] == pytest.approx(1 - vis.mean(), abs=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images_found"] == metrics["images_read"] == 9 and metrics["outputs"] == 18
    assert metrics["images_skipped"] == 0 and metrics["workers"] == 2 and metrics["images_per_s"] > 0
    assert sum(metrics["per_occluder"].values()) == 18 and sum(metrics["per_class"].values()) == 18
    assert (out / "skipped.txt").read_text() == ""
    assert "copies: 2" in (out / "config.yaml").read_text()
    err = capsys.readouterr().err
    assert "augment" in err and "images/s" in err
    # refuses to overwrite without --force
    assert run(argv) == 1
    assert "--force" in capsys.readouterr().err


def test_same_seed_same_bytes_whatever_the_workers(tiny_tree: Path, tmp_path: Path):
    base = ["augment", str(tiny_tree), "--seed", "11", "--keep-clean", "0"]
    assert run(base + ["--out", str(tmp_path / "w1"), "--workers", "1"]) == 0
    assert run(base + ["--out", str(tmp_path / "w2"), "--workers", "2"]) == 0
    assert run(base + ["--out", str(tmp_path / "w1b"), "--workers", "0"]) == 0
    a, b, c = (tree_bytes(tmp_path / n) for n in ("w1", "w2", "w1b"))
    assert len(a) == 3 * 9 + 2
    assert a == b == c
    assert run(["augment", str(tiny_tree), "--seed", "12", "--keep-clean", "0", "--out", str(tmp_path / "s12"), "--workers", "1"]) == 0
    d = tree_bytes(tmp_path / "s12")
    assert d.keys() == a.keys() and d != a


def test_occluders_option_format_and_mask_size(tiny_tree: Path, tmp_path: Path, capsys):
    out = tmp_path / "sel"
    argv = ["augment", str(tiny_tree), "--out", str(out), "--workers", "1", "--occluders", "sunglasses=2,steam",
            "--keep-clean", "0", "--format", "jpg", "--mask-size", "4", "--set", "transparent.opacity=[0.5,0.6]"]
    assert run(argv) == 0
    rows = manifest(out)
    assert {r["occluder"] for r in rows} <= {"sunglasses", "steam"}
    assert all(r["output"].endswith(".jpg") and r["mask"].endswith(".png") for r in rows)
    assert np.load(out / rows[0]["mask7"]).shape == (4, 4)
    assert read_image_rgb(out / rows[0]["output"]).shape == (112, 112, 3)
    assert run(["augment", str(tiny_tree), "--out", str(tmp_path / "x"), "--occluders", "snorkel"]) == 1
    assert "unknown occluder 'snorkel'" in capsys.readouterr().err
    assert run(["augment", str(tiny_tree), "--out", str(tmp_path / "y"), "--set", "weights.snorkel=1"]) == 1
    assert "weights.snorkel" in capsys.readouterr().err


def test_unreadable_image_is_reported_and_skipped(tiny_tree: Path, tmp_path: Path, capsys):
    (tiny_tree / "Abdullah_Gul" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    out = tmp_path / "aug"
    assert run(["augment", str(tiny_tree), "--out", str(out), "--workers", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images_found"] == 10 and metrics["images_read"] == 9 and metrics["images_skipped"] == 1
    skipped = (out / "skipped.txt").read_text().splitlines()
    assert len(skipped) == 1 and skipped[0].startswith("Abdullah_Gul/broken.jpg\t") and "does not decode" in skipped[0]
    assert all(r["source"] != "Abdullah_Gul/broken.jpg" for r in manifest(out))
    assert "skipped 1 unreadable" in capsys.readouterr().err


def test_nothing_readable_is_an_error(tmp_path: Path, capsys):
    src = tmp_path / "bad"
    (src / "p").mkdir(parents=True)
    (src / "p" / "a.jpg").write_bytes(b"nope")
    assert run(["augment", str(src), "--out", str(tmp_path / "o"), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "none of the 1 images" in err and "Traceback" not in err


def test_empty_or_missing_folder_is_a_clear_error(tmp_path: Path, capsys):
    empty = tmp_path / "empty"
    (empty / "someone").mkdir(parents=True)
    assert run(["augment", str(empty), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "no images found under" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    assert run(["augment", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert "data folder not found" in capsys.readouterr().err


def test_landmarks_file(tiny_tree: Path, tmp_path: Path, capsys):
    rels = sorted(p.relative_to(tiny_tree).as_posix() for p in tiny_tree.glob("*/*"))
    lm = template_for_size((112, 112))
    lm_file = tmp_path / "landmarks.csv"
    write_landmarks(lm_file, [(r, lm, 0.99) for r in rels[1:]])  # the first image has no row
    out = tmp_path / "aug"
    argv = ["augment", str(tiny_tree), "--out", str(out), "--workers", "1", "--landmarks", str(lm_file)]
    assert run(argv) == 1
    err = capsys.readouterr().err
    assert rels[0] in err and "--missing-landmarks template" in err
    assert not out.exists()
    assert run(argv + ["--missing-landmarks", "template", "--occluders", "medical_mask,sunglasses", "--keep-clean", "0"]) == 0
    rows = manifest(out)
    assert [r["landmarks"] for r in rows] == ["template"] + ["file"] * (len(rels) - 1)
    for row in rows:
        vis = read_visibility_png(out / row["mask"])
        kv = row["keypoint_visibility"]
        assert len(kv) == 5 and set(kv) <= {1, 2}
        expected = [2 if vis[int(round(y)), int(round(x))] >= 0.5 else 1 for x, y in lm]
        assert kv == expected
        if row["occluder"] == "medical_mask":
            assert kv == [2, 2, 1, 1, 1]
        else:
            assert kv[:2] == [1, 1] and kv[3:] == [2, 2]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["landmarks_from_template"] == 1
    assert run(["augment", str(tiny_tree), "--out", str(tmp_path / "z"), "--landmarks", str(tmp_path / "nope.csv")]) == 1
    assert "landmarks file not found" in capsys.readouterr().err
