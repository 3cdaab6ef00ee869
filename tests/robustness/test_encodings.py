"""Defect 2: config, pairs and landmarks files that are not UTF-8: one line naming the file and
the byte offset; Latin-1 names in a pairs file are found on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from occtool.cli.app import run
from occtool.evaluation.pairs import locate_pair_images, read_pairs
from tests.robustness.conftest import one_error_line, write_tree

RANDOM = bytes(range(256)) * 3


@pytest.mark.parametrize("content", [RANDOM, "# caf\u00e9 comment\nseed: 3\n".encode("latin-1")])
def test_config_not_utf8(tmp_path, synth_tree, content, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(content)
    assert run(["augment", str(synth_tree), "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(cfg) in line and "not UTF-8" in line and "offset" in line
    assert not (tmp_path / "o").exists()


def test_landmarks_not_utf8(tmp_path, synth_tree, capsys):
    lm = tmp_path / "lm.csv"
    lm.write_bytes(b"path,x1,y1\n" + "Jos\u00e9/a.png,1,2\n".encode("latin-1"))
    rc = run(["augment", str(synth_tree), "--out", str(tmp_path / "o"), "--landmarks", str(lm),
              "--occluders", "rectangles"])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 1 and str(lm) in line and "offset 14" in line


def test_pairs_random_bytes(tmp_path, synth_tree, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_bytes(RANDOM)
    assert run(["make-protocol", str(synth_tree), "--out", str(tmp_path / "o"), "--pairs", str(pairs)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(pairs) in line and "not UTF-8" in line and "offset 128" in line


@pytest.mark.parametrize("folder_bytes", ["utf-8", "latin-1"])
def test_latin1_names_in_a_pairs_file(tmp_path, folder_bytes):
    name = "Jos\u00e9_A"
    root = tmp_path / "root"
    disk = os.fsdecode(name.encode(folder_bytes))  # how the file system spells the folder
    write_tree(root, {disk: 2, "Bob_B": 1})
    if folder_bytes == "latin-1":  # file names inside carry the same bytes
        for f in (root / disk).iterdir():
            f.rename(f.with_name(f.name.replace("Jos\u00e9_A", disk)))
    pairs = tmp_path / "pairs.txt"
    pairs.write_bytes(f"1 1\n{name} 1 2\n{name} 1 Bob_B 1\n".encode("latin-1"))
    got = read_pairs(pairs)
    assert got[0].name_a == name
    a, b, missing = locate_pair_images(got, root)
    assert missing == [] and a[0].parent.name == disk
