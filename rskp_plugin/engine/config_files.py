"""Experiment YAML files: packaged names, and ``base:`` inheritance.

A YAML file may name another config it builds on and hold only what it changes::

    base: quick                      # a packaged config, or a file path relative to this file
    head: {name: mymodel}
    data: {source: wtalc, root: /data/thumos14}

The base is read first (itself possibly with a base: chains are allowed), then this file laid over it: mappings
merge key by key, any other value (a number, a string, a list) replaces the base's. A cycle of bases is a
``ConfigError`` naming the files in order; a base that is neither a file nor a packaged config suggests the
packaged names. ``load_experiment`` then lays the result over the defaults and the head's recipe as before, and
the run folder's ``config.yaml`` records the resolved values (no ``base`` key).
"""

from __future__ import annotations

import difflib
import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import attrs

from ..errors import ConfigError
from ..yaml_io import merge_mappings, read_yaml, shown

#: The key that names the config a YAML file builds on.
BASE_KEY = "base"
#: At most this many files in one chain of bases (a longer chain is almost surely a mistake).
MAX_BASES = 32


def _packaged_folder() -> Any:
    return resources.files("rskp_plugin") / "configs"


def packaged_configs() -> list[str]:
    """Names of the YAML configs shipped in ``rskp_plugin/configs`` (sorted)."""
    return sorted(p.name[: -len(".yaml")] for p in _packaged_folder().iterdir() if p.name.endswith(".yaml"))


def _packaged_path(name: str | os.PathLike[str]) -> Path | None:
    path = Path(name)
    packaged = _packaged_folder() / f"{path.stem if path.suffix == '.yaml' else path}.yaml"
    return Path(str(packaged)) if packaged.is_file() else None


def resolve_config_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A path as given if it exists, else a packaged config of that name; ``ConfigError`` lists the choices."""
    path = Path(name_or_path)
    if path.exists():
        return path
    packaged = _packaged_path(name_or_path)
    if packaged is not None:
        return packaged
    raise ConfigError(
        f"Config file {os.fspath(name_or_path)!r} does not exist and is not a packaged config; pass an existing "
        f"YAML file or one of: {', '.join(packaged_configs())}"
    )


def is_packaged(path: Path) -> bool:
    """Whether ``path`` is one of the configs shipped with the package."""
    try:
        return path.resolve().parent == Path(str(_packaged_folder())).resolve()
    except OSError:
        return False


@attrs.frozen
class ConfigFile:
    """A YAML experiment file with its bases merged in.

    Attributes:
        data: the merged mapping (no ``base`` key), or the file's value as read when that is not a mapping (the
            config builder names the problem).
        files: the file first, then its base, the base's base, ...
        packaged_options: the ``head.options`` keys whose value comes from a packaged config (not set by a file of
            the user's): ``load_experiment`` leaves out those the head's factory does not take.
    """

    data: Any
    files: tuple[Path, ...]
    packaged_options: frozenset[str] = frozenset()


def read_config_file(name_or_path: str | os.PathLike[str]) -> ConfigFile:
    """The YAML file (or packaged config name) ``name_or_path`` with its chain of ``base:`` configs merged in."""
    return _read(resolve_config_path(name_or_path), ())


def _read(path: Path, chain: tuple[Path, ...]) -> ConfigFile:
    data = read_yaml(path)
    if not isinstance(data, Mapping) or BASE_KEY not in data:
        return ConfigFile(data, (path,), _options(data) if is_packaged(path) else frozenset())
    below_path = _base_path(data[BASE_KEY], path)
    seen = [*chain, path]
    if any(_same(below_path, p) for p in seen):
        names = " -> ".join(os.fspath(p) for p in (*seen, below_path))
        raise ConfigError(f"Config files name each other as base in a cycle: {names}; remove one of the base keys")
    if len(seen) >= MAX_BASES:
        raise ConfigError(f"{os.fspath(path)}: more than {MAX_BASES} configs in one chain of bases")
    below = _read(below_path, tuple(seen))
    own = {k: v for k, v in data.items() if k != BASE_KEY}
    if not isinstance(below.data, Mapping):
        raise ConfigError(f"{os.fspath(below_path)} (the base of {os.fspath(path)}) must be a mapping of keys to "
                          f"values, got {type(below.data).__name__}")
    mine = _options(own)
    packaged = mine if is_packaged(path) else frozenset()
    if _options_replaced(own):
        kept = packaged
    else:
        kept = (below.packaged_options - mine) | packaged
    return ConfigFile(merge_mappings(below.data, own), (path, *below.files), kept)


def _options(data: Any) -> frozenset[str]:
    head = data.get("head") if isinstance(data, Mapping) else None
    options = head.get("options") if isinstance(head, Mapping) else None
    return frozenset(str(k) for k in options) if isinstance(options, Mapping) else frozenset()


def _options_replaced(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` gives ``head.options`` a value that is not a mapping (null replaces the base's options)."""
    head = data.get("head")
    return isinstance(head, Mapping) and "options" in head and not isinstance(head["options"], Mapping)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def _base_path(value: Any, path: Path) -> Path:
    """The file ``base: value`` in ``path`` names: a file relative to ``path``'s folder (or absolute), else a
    packaged config of that name."""
    if not isinstance(value, str) or not value.strip():
        names = ", ".join(packaged_configs())
        raise ConfigError(f'{os.fspath(path)}: "{BASE_KEY}" must name a packaged config ({names}) or a YAML file '
                          f"relative to this one, got {shown(value, 80)}")
    local = (path.parent / Path(value).expanduser())
    if local.is_file():
        return local
    packaged = _packaged_path(value)
    if packaged is not None:
        return packaged
    names = packaged_configs()
    close = difflib.get_close_matches(Path(value).stem, names, n=1)
    hint = f' Did you mean "{close[0]}"?' if close else ""
    raise ConfigError(f'{os.fspath(path)}: base "{value}" is neither a file (looked for {os.fspath(local)}) nor a '
                      f"packaged config.{hint} Packaged configs: {', '.join(names)}")
