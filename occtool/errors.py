"""Errors a user can cause. The CLI turns any `OcctoolError` into one line on stderr, exit 1."""


class OcctoolError(Exception):
    """Base class: a clear, user-facing problem (bad input, bad config, bad checkpoint)."""


class ConfigError(OcctoolError):
    """A config file or override is invalid (unknown key, wrong type)."""


class DataError(OcctoolError):
    """A data folder, image, landmarks or mask file is missing, empty or unreadable."""


class ShapeError(OcctoolError, ValueError):
    """A tensor or array has the wrong shape; the message says expected vs got."""


class CheckpointError(OcctoolError):
    """A checkpoint or weights file is missing, malformed or incompatible."""


class OutputExistsError(OcctoolError):
    """An output folder already holds results and --force was not given."""


class OutputError(OcctoolError):
    """An output folder or file cannot be created or written (permissions, read-only, disk full)."""


class TrainingError(OcctoolError):
    """Training cannot continue (e.g. too many non-finite losses in a row)."""


def check_shape(name: str, shape, expected: str, ok: bool) -> None:
    """Raise ShapeError('<name>: expected <expected>, got <shape>') unless ok."""
    if not ok:
        raise ShapeError(f"{name}: expected {expected}, got {tuple(shape)}")
