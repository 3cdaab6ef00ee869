import subprocess
import sys

from occtool import __version__
from occtool.cli.app import run


def test_version(capsys):
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"occtool {__version__}"


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from occtool.cli.app import run\n"
        "rc = run(['--help'])\n"
        "assert rc == 0, rc\n"
        "heavy = [m for m in ('torch', 'cv2', 'sklearn', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_unknown_command_is_a_usage_error(capsys):
    assert run(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_occtool_error_becomes_one_line(monkeypatch, capsys):
    import occtool.cli.app as app_mod
    from occtool.errors import DataError

    def boom(*a, **k):
        raise DataError("data folder not found: /nope")

    monkeypatch.setattr(app_mod, "app", boom)
    assert run(["anything"]) == 1
    err = capsys.readouterr().err
    assert err == "error: data folder not found: /nope\n"
