import json

import pytest

from occtool.errors import OutputExistsError
from occtool.io import atomic_save, atomic_write_json, atomic_write_text, prepare_out_dir


def test_prepare_out_dir_refuses_non_empty_without_force(tmp_path):
    out = prepare_out_dir(tmp_path / "run")
    (out / "metrics.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="--force"):
        prepare_out_dir(out)
    assert prepare_out_dir(out, force=True) == out
    assert (out / "metrics.json").exists()  # force allows overwriting, it does not wipe


def test_prepare_out_dir_rejects_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputExistsError, match="not a folder"):
        prepare_out_dir(tmp_path / "f")


def test_atomic_writes_leave_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"a": 1})
    atomic_write_text(tmp_path / "t.txt", "hi")
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "t.txt"]


def test_failed_save_keeps_old_file(tmp_path):
    target = tmp_path / "ckpt.bin"
    target.write_text("old")

    def boom(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_save(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]
