"""Typed configuration: dataclasses, YAML files that hold only overrides, and `--set key=value`.

Every config in the project is a (possibly nested) dataclass. `build_config` starts from the
dataclass defaults (or a preset instance), applies a YAML file and then `key=value` strings in
order. An unknown key or a value of the wrong type raises `ConfigError` naming the dotted key; a
value out of range is refused by the class's own `validate()`, run on construction (`Validated`).
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from minivln_core.errors import ConfigError

T = TypeVar("T")


class Validated:
    """Mixin of the config dataclasses: `validate()` runs in `__post_init__`, i.e. on every
    construction, `dataclasses.replace` and `from_dict`, so a bad value never gets past the line
    that made it and no caller has to remember to check."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first bad key (subclasses extend this)."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; return it (ints widen to float). Raise on mismatch."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': {value!r} is not of type {_type_name(tp)}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"config key '{key}': {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"config key '{key}': expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"config key '{key}': expected {tp.__name__}, got {value!r}")
    return value


def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "", base: T | None = None) -> T:
    """Build `cls` from a mapping, starting at `base` (or the defaults); unknown keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"config '{prefix.rstrip('.') or cls.__name__}': expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}' (valid keys of {cls.__name__}: {', '.join(sorted(names))})"
        )
    obj = base if base is not None else cls()
    changes = {}
    for name, value in data.items():
        tp = hints[name]
        current = getattr(obj, name)
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            changes[name] = from_dict(tp, value, prefix=f"{prefix}{name}.", base=current)
        else:
            changes[name] = _coerce(value, tp, f"{prefix}{name}")
    return dataclasses.replace(obj, **changes)  # a Validated config checks itself here


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-data view of a config dataclass (tuples become lists, for YAML/JSON)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(obj)


def parse_override(text: str) -> tuple[str, Any]:
    """Split `a.b=value`; the value is parsed as YAML (so 3, 0.1, true, [1, 2] and strings work)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from None
    return key, value


def nest(key: str, value: Any) -> dict[str, Any]:
    """'a.b.c', v -> {'a': {'b': {'c': v}}}."""
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping with the safe loader; an empty file is an empty mapping."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return data


def build_config(
    cls: type[T],
    base: T | None = None,
    yaml_path: str | Path | None = None,
    overrides: Iterable[str] = (),
) -> T:
    """Defaults (or `base`) <- YAML file <- `key=value` overrides, each checked against `cls`."""
    obj = base if base is not None else cls()
    if yaml_path is not None:
        try:
            obj = from_dict(cls, read_yaml(yaml_path), base=obj)
        except ConfigError as exc:
            raise ConfigError(f"{yaml_path}: {exc}") from None
    merged: dict[str, Any] = {}
    for text in overrides:  # merged first so validation sees the final values, not each step
        key, value = parse_override(text)
        _deep_merge(merged, nest(key, value))
    if merged:
        obj = from_dict(cls, merged, base=obj)
    return obj


def _deep_merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Merge `other` into `into` recursively; later values win."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def save_yaml(obj: Any, path: str | Path) -> None:
    """Write a config as YAML atomically (resolved configs are saved next to each run)."""
    from minivln_core.io_utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False))


__all__ = ["build_config", "from_dict", "to_dict", "parse_override", "read_yaml", "save_yaml", "ConfigError"]
