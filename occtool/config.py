"""The one config system: dataclasses with defaults <- YAML file <- CLI overrides.

Every command defines a (possibly nested) dataclass. `load_config` starts from its defaults,
applies a YAML mapping, then `key=value` overrides (dotted keys reach nested dataclasses).
Unknown keys and values of the wrong type are `ConfigError`s naming the key.

Configs validate their values in `__post_init__` with the `check_*` helpers below, which raise
`ConfigValueError(key, expectation, value)`; `from_dict` adds the section's dotted prefix, so the
user reads one line such as `model.hidden_channels: expected an integer >= 1, got 0`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import yaml

from occtool.errors import ConfigError

T = TypeVar("T")


def load_config(
    cls: type[T],
    *,
    yaml_path: str | Path | None = None,
    overrides: Mapping[str, Any] | Iterable[str] = (),
) -> T:
    """Build `cls` from defaults, then the YAML file, then overrides.

    overrides: a mapping {dotted.key: value} (values already typed, e.g. CLI options; None
    values are skipped) or strings "dotted.key=value" (value parsed as YAML).
    """
    data: dict[str, Any] = {}
    if yaml_path is not None:
        data = read_yaml_mapping(yaml_path)
    for key, value in _override_items(overrides):
        _set_dotted(data, key, value)
    return from_dict(cls, data)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    from occtool.io import read_text

    text = read_text(path, what="config file", error=ConfigError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Instantiate dataclass `cls` from a plain mapping, recursively, checking keys and types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or cls.__name__
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)} in {where}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, prefix + name) for name, value in data.items()}
    defaults = cls()  # type: ignore[call-arg]
    try:
        return dataclasses.replace(defaults, **kwargs)  # runs cls.__post_init__ (its checks)
    except ConfigValueError as exc:
        raise exc.under(prefix) from None


# ---------------------------------------------------------------------------------------------
# Value checks for __post_init__ (keys relative to the config class; from_dict adds the section)


class ConfigValueError(ConfigError):
    """A config value out of its allowed range: `<key>: expected <expectation>, got <value>`."""

    def __init__(self, key: str, expectation: str, value: Any) -> None:
        self.key, self.expectation, self.value = key, expectation, value
        super().__init__(f"{key}: expected {expectation}, got {value!r}")

    def under(self, prefix: str) -> "ConfigValueError":
        return ConfigValueError(prefix + self.key, self.expectation, self.value) if prefix else self


def _range_text(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    return f"{'<' if hi_open else '<='} {hi}"


def check_range(key: str, value: Any, *, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False, optional: bool = False) -> None:
    """A finite number within [lo, hi] ((lo, ... with lo_open, ...) when hi_open); None allowed
    when `optional`. Integer-typed fields are checked the same way (their type by from_dict)."""
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        what = "a number " + _range_text(lo, hi, lo_open, hi_open) if (lo is not None or hi is not None) else "a finite number"
        raise ConfigValueError(key, what + (" or null" if optional else ""), value)


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> None:
    """`value` one of `choices`."""
    choices = list(choices)
    if value not in choices:
        raise ConfigValueError(key, "one of " + ", ".join(map(str, choices)), value)


def check_subset(key: str, values: Iterable[Any], choices: Iterable[Any], *, allow_empty: bool = True) -> None:
    """Every item of `values` one of `choices` (and at least one unless allow_empty)."""
    choices, values = list(choices), list(values)
    if any(v not in choices for v in values) or (not values and not allow_empty):
        some = "any" if allow_empty else "one or more"
        raise ConfigValueError(key, f"{some} of " + ", ".join(map(str, choices)), values)


def check_interval(key: str, pair: Any, *, lo: float | None = None, hi: float | None = None,
                   lo_open: bool = False, hi_open: bool = False) -> None:
    """A (min, max) pair with min <= max, both within the range."""
    ok = isinstance(pair, (list, tuple)) and len(pair) == 2
    if ok:
        try:
            check_range(key, pair[0], lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)
            check_range(key, pair[1], lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)
        except ConfigValueError:
            ok = False
        ok = ok and pair[0] <= pair[1]
    if not ok:
        bounds = _range_text(lo, hi, lo_open, hi_open) if (lo is not None or hi is not None) else ""
        raise ConfigValueError(key, f"[min, max] with min <= max{', both ' + bounds if bounds else ''}",
                               list(pair) if isinstance(pair, tuple) else pair)


DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(key: str, value: Any) -> None:
    """A device string: auto (CUDA when available), cpu, cuda or cuda:N (no torch needed)."""
    if not (isinstance(value, str) and DEVICE_PATTERN.fullmatch(value)):
        raise ConfigValueError(key, "auto, cpu, cuda or cuda:N", value)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-Python (YAML/JSON-safe) dict of a config dataclass."""
    return _plain(dataclasses.asdict(cfg))


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=3' -> ('a.b', 3); the value is parsed as YAML so lists and numbers work."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _override_items(overrides) -> list[tuple[str, Any]]:
    if isinstance(overrides, Mapping):  # a None value is an explicit null (`--set key=null`)
        return list(overrides.items())
    return [parse_override(o) for o in overrides]


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value or {}, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(a, v, key) for a, v in zip(args, value))
        item = args[0] if args else Any
        items = [_coerce(item, v, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(kt, k, key): _coerce(vt, v, f"{key}.{k}") for k, v in value.items()}
    return _coerce_scalar(tp, value, key)


def _coerce_scalar(tp: Any, value: Any, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{key}: expected a path, got {value!r}")
    return value


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
