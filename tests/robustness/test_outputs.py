"""Defects 1, 4 (augment), 6 and the umask: one output-folder mechanism (occtool.io.output_folder)."""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from occtool.cli.app import run
from occtool.io import MARKER, atomic_write_json, output_folder
from tests.robustness.conftest import one_error_line, write_tree

AUG = ["--occluders", "rectangles", "--workers", "1"]


# ----------------------------------------------------------------- defect 1: unwritable --out


def _unwritable_outs(tmp_path: Path) -> list[tuple[Path, str]]:
    (tmp_path / "a_file").write_text("x")
    return [(Path("/proc/occtool-test/out"), "No such file or directory"),
            (tmp_path / "a_file" / "out", "Not a directory")]


@pytest.mark.parametrize("command", ["align", "augment", "make-protocol"])
def test_unwritable_out_is_one_line(command, synth_tree, tmp_path, capsys):
    for out, reason in _unwritable_outs(tmp_path):
        extra = AUG if command == "augment" else []
        assert run([command, str(synth_tree), "--out", str(out), *extra]) == 1
        line = one_error_line(capsys.readouterr().err)
        assert str(out) in line and reason in line


def test_unwritable_out_of_eval_gallery_and_train(synth_tree, tmp_path, capsys):
    out = Path("/proc/occtool-test/out")
    args = ["eval-gallery", "--gallery-root", str(synth_tree), "--probe-root", str(synth_tree),
            "--backbone", "mobilefacenet", "--weights", "none", "--no-cache", "--out", str(out)]
    rc = run(args)
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and str(out) in err
    assert run(["train", "--data", str(synth_tree), "--out", str(out)]) == 1
    line = one_error_line(capsys.readouterr().err.split("\n", 1)[-1])  # after the "no --config" note
    assert str(out) in line


def test_read_only_folder_is_one_line(tmp_path, monkeypatch):
    """A read-only / immutable folder (root ignores chmod, so the write probe is made to fail)."""
    import tempfile

    from occtool.errors import OutputError

    def refuse(*a, **k):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match=r"--out .*ro: cannot write there \(Read-only file system\)"):
        with output_folder(tmp_path / "ro", command="x"):
            pass


def test_unwritable_cache_is_a_warning_and_the_run_goes_on(tmp_path):
    from occtool.evaluation.eval_gallery import usable_cache_dir

    (tmp_path / "f").write_text("x")
    cache, note = usable_cache_dir(tmp_path / "f" / "cache")
    assert cache is None and "cannot be written" in note and "without the cache" in note
    assert usable_cache_dir(tmp_path / "ok") == (tmp_path / "ok", None)


# ----------------------------------------------------------------- defect 6: --force replaces own outputs


def test_force_replaces_augment_outputs_and_keeps_foreign(tmp_path, capsys):
    src = write_tree(tmp_path / "src", {"Ann_A": 2, "Bob_B": 1})
    out = tmp_path / "aug"
    assert run(["augment", str(src), "--out", str(out), *AUG]) == 0
    (out / "notes.txt").write_text("mine")  # a foreign file
    src2 = write_tree(tmp_path / "src2", {"Cid_C": 1})
    capsys.readouterr()
    assert run(["augment", str(src2), "--out", str(out), *AUG, "--force"]) == 0
    err = capsys.readouterr().err
    images = sorted(p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*.png"))
    manifest = [json.loads(x)["output"] for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert images == ["Cid_C/Cid_C_0001.png"]
    assert manifest == ["images/" + i for i in images]  # the manifest describes the folder
    assert (out / "notes.txt").read_text() == "mine" and "notes.txt" in err


def test_force_replaces_protocol_outputs(tmp_path):
    src = write_tree(tmp_path / "src", {"Ann_A": 2, "Bob_B": 2})
    out = tmp_path / "proto"
    assert run(["make-protocol", str(src), "--out", str(out)]) == 0
    src2 = write_tree(tmp_path / "src2", {"Cid_C": 2})
    assert run(["make-protocol", str(src2), "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in (out / "gallery").iterdir()) == ["Cid_C"]
    assert sorted(p.name for p in (out / "probes").iterdir()) == ["Cid_C"]


# ----------------------------------------------------------------- defect 4 (augment): disk full


def test_disk_full_during_augment_is_one_line_and_marked(tmp_path, monkeypatch, capsys):
    import occtool.augment.batch as batch

    src = write_tree(tmp_path / "src", {"Ann_A": 3})
    out = tmp_path / "aug"
    real = batch._process
    calls = {"n": 0}

    def full(task):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "images" / "x.png"))
        return real(task)

    monkeypatch.setattr(batch, "_process", full)
    assert run(["augment", str(src), "--out", str(out), *AUG]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "No space left on device" in line and str(out) in line and "--force" in line
    marker = json.loads((out / MARKER).read_text())
    assert marker["status"].startswith("failed") and not (out / "metrics.json").exists()
    assert not [p for p in out.rglob("*") if ".occtmp-" in p.name]
    # a rerun without --force says the folder holds an incomplete run; with --force it is safe
    assert run(["augment", str(src), "--out", str(out), *AUG]) == 1
    assert "incomplete run of occtool augment" in capsys.readouterr().err
    monkeypatch.setattr(batch, "_process", real)
    assert run(["augment", str(src), "--out", str(out), *AUG, "--force"]) == 0
    assert json.loads((out / MARKER).read_text())["status"] == "complete"


def test_killed_write_leaves_temp_that_the_next_run_removes(tmp_path):
    out = tmp_path / "run"
    with output_folder(out, command="x"):
        pass
    (out / "sub").mkdir()
    orphan = out / "sub" / ".state-00000001.pt.occtmp-abc.pt"  # what a SIGKILL mid-write leaves
    orphan.write_bytes(b"")
    with output_folder(out, command="x", resume=True):
        pass
    assert not orphan.exists()


# ----------------------------------------------------------------- the umask


def test_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_json(tmp_path / "m.json", {"a": 1})
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        os.umask(0o077)
        q = atomic_write_json(tmp_path / "n.json", {"a": 1})
        assert stat.S_IMODE(q.stat().st_mode) == 0o600
    finally:
        os.umask(old)


@dataclass
class ExampleConfig:
    a: int = 1


def test_a_user_error_before_any_output_leaves_nothing(tmp_path):
    from occtool.errors import ConfigError, DataError

    out = tmp_path / "new"
    with pytest.raises(DataError):
        with output_folder(out, command="x", cfg=ExampleConfig()):
            raise DataError("leakage: ...")
    assert not out.exists()  # the fixed command simply reruns, no --force needed
    with output_folder(out, command="x"):
        (out / "result.txt").write_text("r")
    before = (out / MARKER).read_text()
    with pytest.raises(ConfigError):  # e.g. --resume refused: the run is left as it was
        with output_folder(out, command="x", resume=True):
            raise ConfigError("--resume: the config differs")
    assert (out / MARKER).read_text() == before
