"""Defect 10: Ctrl-C ends in one line saying what was interrupted and how to go on, exit 130."""

from __future__ import annotations

import json

from occtool.cli.app import run
from occtool.io import MARKER
from tests.robustness.conftest import write_tree


def test_sigint_during_augment_says_what_and_how(tmp_path, monkeypatch, capsys):
    import occtool.augment.batch as batch

    src = write_tree(tmp_path / "src", {"Ann_A": 2})
    out = tmp_path / "aug"

    def ctrl_c(task):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "_process", ctrl_c)
    assert run(["augment", str(src), "--out", str(out), "--occluders", "rectangles", "--workers", "1"]) == 130
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("interrupted")]
    assert lines == [f"interrupted: occtool augment into {out}; the folder is marked incomplete "
                     "(rerun with --force to replace it)"]
    assert json.loads((out / MARKER).read_text())["status"] == "interrupted"


def test_sigint_during_train_names_resume(tmp_path, monkeypatch, capsys):
    import occtool.training as training

    src = write_tree(tmp_path / "src", {"Ann_A": 2, "Bob_B": 2})
    out = tmp_path / "run"

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", ctrl_c)
    assert run(["train", "--data", str(src), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"interrupted: occtool train into {out}" in err and f"occtool train --out {out} --resume" in err


def test_sigint_outside_an_output_folder_names_the_command(tmp_path, monkeypatch, capsys):
    import occtool.evaluation.protocol as protocol

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(protocol, "build_protocol", ctrl_c)
    assert run(["make-protocol", str(tmp_path), "--out", str(tmp_path / "p")]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted: occtool make-protocol"


def test_real_sigint_to_a_running_augment(tmp_path):
    """The real signal through typer: one line, exit 130, the folder marked interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    src = write_tree(tmp_path / "src", {f"P{i:02d}": 40 for i in range(40)})  # 1,600 images: >= 5 s of work, so a
    # loaded machine that polls late still signals a running job
    out = tmp_path / "aug"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "occtool.cli.app", "augment", str(src), "--out", str(out),
                             "--occluders", "rectangles", "--workers", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # as from a terminal: a test worker may run with SIGINT ignored, which a
                            # child inherits (Python then installs no KeyboardInterrupt handler)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not list((out / "masks7").rglob("*.npy")) and time.time() < deadline:  # working on images
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert [x for x in err.splitlines() if x.startswith("interrupted")] == [
        f"interrupted: occtool augment into {out}; the folder is marked incomplete (rerun with --force to replace it)"]
    assert json.loads((out / MARKER).read_text())["status"] == "interrupted"


def test_sigint_during_threaded_align_stops_its_workers(tmp_path, monkeypatch, capsys):
    """align --workers 2 with ONNX Runtime runs threads in the process: Ctrl-C in the main thread
    stops them (no thread left running, the shared detector state cleared), exit 130."""
    import threading

    import occtool.align.tree as tree
    from tests.conftest import shared_or_skip

    lfw = shared_or_skip("data", "lfw", "images")
    src = tmp_path / "raw"
    for person in ("Aaron_Peirsol", "Abdullah_Gul"):
        (src / person).mkdir(parents=True)
        for img in sorted((lfw / person).iterdir())[:3]:
            (src / person / img.name).symlink_to(img)
    out, real, seen = tmp_path / "aligned", tree._checked, []

    def ctrl_c_after_one(result):
        seen.append(result)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(result)

    monkeypatch.setattr(tree, "_checked", ctrl_c_after_one)
    before = set(threading.enumerate())
    assert run(["align", str(src), "--out", str(out), "--workers", "2", "--runtime", "onnxruntime"]) == 130
    from rich.live import _RefreshThread
    for thread in set(threading.enumerate()) - before:
        if isinstance(thread, _RefreshThread):  # rich signals its redraw thread to end but never joins it
            thread.join(timeout=5)
    assert set(threading.enumerate()) == before and not tree._STATE
    assert f"interrupted: occtool align into {out}" in capsys.readouterr().err
    assert json.loads((out / MARKER).read_text())["status"] == "interrupted"
