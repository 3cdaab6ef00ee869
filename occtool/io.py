"""Output folders and atomic writes (temp file in the same folder + os.replace).

`output_folder(out, command=..., force=..., cfg=...)` is the one way a command prepares `--out`:
it refuses a non-empty folder without `--force`, names the path and the reason when the folder
cannot be created or written, and keeps a marker `.occtool-run.json` (command, status, the
entries that were there before: "foreign"). With `--force` the command's own previous outputs
(everything not foreign) are removed first, foreign files are left with a note. On failure or
interrupt the marker says so, a `metrics.json` of this run is removed (the folder does not look
finished), temp files are gone, and an OSError while writing (disk full...) becomes one line.
A user error (an OcctoolError) before the run wrote anything leaves nothing behind, and a
refused `--resume` leaves the run as it was.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from occtool.errors import OcctoolError, OutputError, OutputExistsError

MARKER = ".occtool-run.json"
TMP_TAG = ".occtmp-"  # in every temp file name: leftovers of a killed run are recognisable

# errors of writing (not of reading an input): reported as one line naming the folder
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO, errno.EACCES, errno.EPERM})

_note_sink: Optional[Callable[[str], None]] = None
_interrupted: dict[str, Optional[str]] = {"what": None}


def set_note_sink(fn: Optional[Callable[[str], None]]) -> None:
    """Where `note()` goes (the CLI prints notes on stderr; the library drops them)."""
    global _note_sink
    _note_sink = fn


def note(message: str) -> None:
    if _note_sink is not None:
        _note_sink(message)


def take_interrupted() -> Optional[str]:
    """What the last interrupted output folder was doing (and how to go on), once."""
    what, _interrupted["what"] = _interrupted["what"], None
    return what


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def _umask() -> int:
    try:  # thread-safe on Linux >= 4.7
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mkstemp(path: Path, suffix: str) -> tuple[int, str]:
    """mkstemp (mode 0600) beside `path`, then the mode a plain open() would give (umask)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_TAG}", suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:  # pragma: no cover - e.g. a file system without modes
        pass
    return fd, tmp


def remove_temp_files(root: str | Path) -> int:
    """Delete temp files left by a killed atomic write under `root`; returns how many."""
    n = 0
    for p in Path(root).rglob(f".*{TMP_TAG}*"):
        if p.is_file() or p.is_symlink():
            p.unlink(missing_ok=True)
            n += 1
    return n


def check_writable_dir(path: str | Path, *, create: bool = True) -> Optional[str]:
    """None when `path` is (or, with create, can be made) a folder we can write into; else why not."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            return "it exists and is not a folder"
        if create:
            path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=f".probe{TMP_TAG}")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return _reason(exc)
    return None


def check_out_dir(out: str | Path, *, force: bool = False, what: str = "--out") -> None:
    """Before any long work: refuse an `out` that prepare_out_dir would refuse, creating nothing
    (writability is probed in the nearest existing folder)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{what} {out} exists and is not a folder")
    if out.is_dir():
        prepare_out_dir(out, force=force, what=what)  # exists already: nothing is created
        return
    base = out.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    why = "a parent is not a folder" if not base.is_dir() else check_writable_dir(base, create=False)
    if why is not None:
        raise OutputError(f"{what} {out}: cannot create the folder ({why})")


def prepare_out_dir(out: str | Path, *, force: bool = False, what: str = "--out") -> Path:
    """Create `out` (refuse a non-empty folder unless force; files are then overwritten in place).
    An OutputError names the path and the reason when it cannot be created or written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{what} {out} exists and is not a folder")
    try:
        busy = out.is_dir() and any(out.iterdir())
    except OSError as exc:
        raise OutputError(f"{what} {out}: cannot read the folder ({_reason(exc)})") from None
    if busy and not force:
        raise OutputExistsError(f"{what} {out} is not empty; pass --force to overwrite{_state_hint(out)}")
    why = check_writable_dir(out)
    if why is not None:
        raise OutputError(f"{what} {out}: cannot write there ({why})")
    return out


def _state_hint(out: Path) -> str:
    marker = _read_marker(out)
    if marker and marker.get("status") not in (None, "complete"):
        return f" (it holds an incomplete run of occtool {marker.get('command')}: {marker.get('status')})"
    return ""


def _read_marker(out: Path) -> Optional[dict]:
    try:
        data = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class OutputFolder:
    """A command's prepared `--out` folder (see the module doc); created by `output_folder`."""

    def __init__(self, path: Path, *, command: str, foreign: list[str], resumed: bool, resume_hint: Optional[str]):
        self.path = path
        self.command = command
        self.foreign = foreign
        self.resumed = resumed
        self.resume_hint = resume_hint
        self.final_status = "complete"  # what the marker says after a run that did not raise

    def mark(self, status: str, *, final: bool = False) -> None:
        """Write the marker; `final`: also list the run's own outputs (what --force will remove)."""
        doc = {"command": self.command, "status": status, "foreign": self.foreign, "time": round(time.time(), 3)}
        if final:
            doc["outputs"] = sorted(p.name for p in self.path.iterdir() if p.name not in set(self.foreign) | {MARKER})
        atomic_write_json(self.path / MARKER, doc)

    def write_config(self, cfg: Any) -> Path:
        return write_config(self.path, cfg)

    def write_metrics(self, metrics: Any) -> Path:
        return atomic_write_json(self.path / "metrics.json", metrics)


def _clear_own_outputs(out: Path, command: str) -> list[str]:
    """--force: remove what an earlier occtool run wrote into `out`; return the foreign names."""
    marker = _read_marker(out)
    names = sorted(p.name for p in out.iterdir() if p.name != MARKER)
    if marker is None:
        if names:
            note(f"--force: {out} was not written by this occtool version; its {len(names)} entries are kept "
                 "and overwritten where names clash")
        return names
    own = marker.get("outputs")  # absent when the run was killed: then all but the foreign ones
    foreign = [n for n in names if (n not in own if isinstance(own, list) else n in set(marker.get("foreign") or []))]
    for name in names:
        if name in foreign:
            continue
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    if foreign:
        shown = ", ".join(foreign[:5]) + (f", ... {len(foreign) - 5} more" if len(foreign) > 5 else "")
        note(f"--force: left {len(foreign)} entries not written by occtool in {out}: {shown}")
    return foreign


@contextmanager
def output_folder(out: str | Path, *, command: str, force: bool = False, cfg: Any = None,
                  resume: bool = False, resume_hint: Optional[str] = None) -> Iterator[OutputFolder]:
    """Prepare `out` for `occtool <command>` and keep it honest (see the module doc).

    resume: the folder holds this command's earlier run, continued in place (nothing removed).
    resume_hint: what to tell the user on failure/interrupt (e.g. "resume with --resume").
    """
    out = Path(out)
    created = not out.exists()
    previous = _read_marker(out) if resume else None
    try:
        if resume:
            if not out.is_dir():
                raise OutputError(f"--resume: run folder not found: {out}")
            why = check_writable_dir(out, create=False)
            if why is not None:
                raise OutputError(f"--out {out}: cannot write there ({why})")
            foreign = list((_read_marker(out) or {}).get("foreign") or [])
        else:
            prepare_out_dir(out, force=force)
            foreign = _clear_own_outputs(out, command) if force else []
        remove_temp_files(out)
        folder = OutputFolder(out, command=command, foreign=foreign, resumed=resume, resume_hint=resume_hint)
        folder.mark("running")
        if cfg is not None:
            folder.write_config(cfg)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write there ({_reason(exc)})") from None
    again = resume_hint or "rerun with --force to replace it"
    try:
        yield folder
    except KeyboardInterrupt:
        _failed(folder, "interrupted")
        _interrupted["what"] = f"occtool {command} into {out}; the folder is marked incomplete ({again})"
        raise
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            _failed(folder, f"failed: {exc.__class__.__name__}")
            raise
        _failed(folder, f"failed: {_reason(exc)}")
        where = f" ({exc.filename})" if exc.filename else ""
        raise OutputError(f"writing into {out} failed: {_reason(exc)}{where}; the folder is marked "
                          f"incomplete ({again})") from None
    except OcctoolError:
        _refused(folder, created=created, previous=previous)
        raise
    except BaseException as exc:
        _failed(folder, f"failed: {exc.__class__.__name__}")
        raise
    folder.mark(folder.final_status, final=True)


def _refused(folder: OutputFolder, *, created: bool, previous: Optional[dict]) -> None:
    """A user error (our exception): a resumed run is left as it was; a new run that wrote
    nothing but its marker and config.yaml leaves nothing (so the fixed command just reruns)."""
    try:
        if folder.resumed:
            if previous is not None:
                atomic_write_json(folder.path / MARKER, previous)
            return
        written = [p.name for p in folder.path.iterdir() if p.name not in set(folder.foreign) | {MARKER, "config.yaml"}]
        if written:
            return _failed(folder, "failed: the run stopped with an error")
        for name in (MARKER, "config.yaml"):
            if name not in folder.foreign:
                (folder.path / name).unlink(missing_ok=True)
        if created and not any(folder.path.iterdir()):
            folder.path.rmdir()
    except OSError:
        pass


def _failed(folder: OutputFolder, status: str) -> None:
    """Best effort (the disk may be full): no temp files, no metrics.json, the marker says why."""
    try:
        remove_temp_files(folder.path)
        if not folder.resumed and "metrics.json" not in folder.foreign:
            (folder.path / "metrics.json").unlink(missing_ok=True)
        folder.mark(status, final=True)
    except OSError:
        pass


def read_text(path: str | Path, *, what: str, error: type[Exception], latin1_fallback: bool = False) -> str:
    """A text file as str. Not UTF-8: `error` naming the file and the byte offset, or with
    `latin1_fallback` the Latin-1 reading (every byte is a character) unless the bytes look binary."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = f"{what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        if latin1_fallback:
            text = data.decode("latin-1")
            if not any(ord(c) < 32 and c not in "\t\n\r\f\v" or 0x7F <= ord(c) < 0xA0 for c in text):
                note(f"{bad}: read as Latin-1")
                return text
        raise error(f"{bad}; save it as UTF-8") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp(path, ".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save(path: str | Path, save_fn) -> Path:
    """Call save_fn(tmp_path) (e.g. torch.save, cv2.imwrite, fig.savefig) then rename atomically.

    The temp name keeps the real suffix so writers that pick a format by extension work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp(path, path.suffix)
    os.close(fd)
    try:
        save_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_config(out: str | Path, cfg: Any) -> Path:
    """Write the final config of a run as `<out>/config.yaml`."""
    from occtool.config import to_yaml

    return atomic_write_text(Path(out) / "config.yaml", to_yaml(cfg))


__all__ = ["MARKER", "OutputFolder", "atomic_save", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "check_writable_dir", "note", "output_folder", "prepare_out_dir", "remove_temp_files", "set_note_sink",
           "take_interrupted", "write_config"]
