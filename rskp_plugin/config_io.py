"""Attrs configs from YAML and ``--set`` overrides: unknown keys and invalid values raise ``ConfigError`` naming the
dotted key (the closest valid key, or the new name of a moved one). Used by the ``rskp`` config
(:mod:`rskp_plugin.config`) and the experiment config (:mod:`rskp_plugin.engine.config`).
"""

from __future__ import annotations

import difflib
import os
import typing
from typing import Any, Mapping, TypeVar

import attrs
import yaml

from .errors import ConfigError
from .yaml_io import read_yaml, safe_load_yaml, shown, shown_text, yaml_problem

T = TypeVar("T")

#: Keys that moved: class -> {old name: new name}, refused with the new name (checkpoints' configs are migrated).
#: A config module adds its classes' moved keys here.
MOVED_KEYS: dict[type, dict[str, str]] = {}


def _unknown_key(cls: type, key: Any, dotted: str, valid: list[str], depth: int = 0) -> ConfigError:
    """The error for a key ``cls`` lacks (``key``: part ``depth`` from the end of ``dotted``): its new name, or
    the closest valid one."""
    moved = MOVED_KEYS.get(cls, {}).get(str(key))
    if moved is not None:
        parts = dotted.split(".")
        at = len(parts) - 1 - depth
        new = ".".join(parts[:at] + [moved] + parts[at + 1:])
        return ConfigError(f'Config key "{dotted}" has moved: did you mean "{new}"?')
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f' Did you mean "{close[0]}"?' if close else ""
    return ConfigError(f'Unknown config key "{dotted}".{hint} Valid keys here: {", ".join(valid)}.')


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, f.type) for f in attrs.fields(cls)}


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, *, path: str = "") -> T:
    """Build ``cls`` from a (YAML) mapping, recursing into nested attrs classes.

    Unknown keys raise ``ConfigError`` naming the dotted path and the valid keys; invalid values raise
    ``ConfigError`` naming the key and the validator's message.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or cls.__name__} must be a mapping of keys to values, got {type(data).__name__}")
    types = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in types:
            raise _unknown_key(cls, key, dotted, sorted(types))
        ftype = types[key]
        if attrs.has(ftype):
            kwargs[key] = from_mapping(ftype, value, path=dotted)
        else:
            kwargs[key] = _coerce(value, ftype, dotted)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        key = _culprit(cls, kwargs)
        if key is None:
            raise ConfigError(f"Invalid value in {path or cls.__name__}: {_message(exc)}") from exc
        dotted = f"{path}.{key}" if path else key
        raise ConfigError(f'Invalid value for "{dotted}" ({shown(kwargs[key], 80)}): {_message(exc)}') from exc


def _culprit(cls: type, kwargs: Mapping[str, Any]) -> str | None:
    """The key of ``kwargs`` whose value alone makes ``cls`` refuse it (None when only a combination does)."""
    for key, value in kwargs.items():
        try:
            cls(**{key: value})
        except (TypeError, ValueError):
            return key
    return None


def _message(exc: BaseException) -> str:
    """An exception's message, at most ``2 * MAX_SHOWN`` characters (a validator may show a whole value); attrs'
    ``in_`` and ``instance_of`` validators put it first in a tuple of internals."""
    if isinstance(exc, (ValueError, TypeError)) and len(exc.args) > 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc)
    return shown_text(text)


def _coerce(value: Any, ftype: Any, dotted: str) -> Any:
    """YAML gives ints for floats and lists for tuples; accept those, reject the rest with the key named."""
    if ftype in (float, "float") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if ftype in (float, "float") and isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    origin = typing.get_origin(ftype)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin is tuple and not isinstance(value, tuple):
        raise ConfigError(f'Config key "{dotted}" must be a list, e.g. [{shown(value, 40)}], got {shown(value)}')
    simple = {int: int, float: float, bool: bool, str: str, "int": int, "float": float, "bool": bool, "str": str}
    want = simple.get(ftype)
    if want is not None and not (isinstance(value, want) and not (want is int and isinstance(value, bool))):
        raise ConfigError(f'Config key "{dotted}" must be {want.__name__}, got {shown(value)}')
    return value


def non_default_mapping(config: Any, *, everything: bool = False) -> dict[str, Any]:
    """The values of an attrs config that differ from its class defaults (``everything``: all values), as nested
    plain data (tuples become lists): what a YAML file holds.
    ``from_mapping(type(config), non_default_mapping(config)) == config``."""
    out: dict[str, Any] = {}
    for field in attrs.fields(type(config)):
        value = getattr(config, field.name)
        if attrs.has(type(value)):
            nested = non_default_mapping(value, everything=everything)
            if nested:
                out[field.name] = nested
            continue
        default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
        if everything or value != default:
            out[field.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def load_yaml(cls: type[T], path: str | os.PathLike[str]) -> T:
    """Read a YAML file holding only non-default values and build ``cls``; errors name the file."""
    data = read_yaml(path)
    try:
        return from_mapping(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{os.fspath(path)}: {exc}") from exc


def apply_overrides(config: T, overrides: list[str]) -> T:
    """Apply ``--set a.b=value`` overrides (values parsed as YAML scalars) through ``attrs.evolve``.

    A key inside a mapping-valued field is set on its own: ``head.options.embed_dim=16`` keeps the other options.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f'Override "{item}" must look like key.sub=value')
        key, raw = item.split("=", 1)
        if not raw.strip():
            raise ConfigError(f'Override "{item}" has no value; write {key}=VALUE, or {key}="" for an empty string')
        try:
            value = safe_load_yaml(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f'Override "{shown_text(item)}": the value is not valid YAML ({yaml_problem(exc)})') from exc
        config = _evolve_path(config, key.strip().split("."), value, key)
    return config


def set_values(config: T, values: Mapping[str, Any]) -> T:
    """Set dotted keys to already-typed values (command-line flags: no YAML parsing, so ``2024`` stays a string).

    Each value is checked like a YAML value of that key; ``ConfigError`` names the key.
    """
    for key, value in values.items():
        config = _evolve_path(config, key.split("."), value, key)
    return config


def _evolve_path(obj: Any, parts: list[str], value: Any, dotted: str) -> Any:
    if isinstance(obj, Mapping):  # a free-form mapping such as head.options: set one key, keep the others
        inner = obj.get(parts[0], {}) if len(parts) > 1 else None
        if len(parts) > 1 and not isinstance(inner, Mapping):
            raise ConfigError(f'Config key "{dotted}": {parts[0]!r} holds {shown(inner)}, not a mapping of keys')
        return {**obj, parts[0]: value if len(parts) == 1 else _evolve_path(inner, parts[1:], value, dotted)}
    if not attrs.has(type(obj)):
        raise ConfigError(f'Config key "{dotted}" goes inside a value ({shown(obj)}); only sections have sub-keys')
    types = _field_types(type(obj))
    head = parts[0]
    if head not in types:
        raise _unknown_key(type(obj), head, dotted, sorted(types), len(parts) - 1)
    if len(parts) == 1:
        new = from_mapping(types[head], value, path=dotted) if attrs.has(types[head]) else _coerce(
            value, types[head], dotted
        )
    else:
        new = _evolve_path(getattr(obj, head), parts[1:], value, dotted)
    try:
        return attrs.evolve(obj, **{head: new})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f'Invalid value for "{dotted}": {_message(exc)}') from exc
