"""Reading YAML safely: size limits against alias bombs, a loader that refuses duplicate keys and Python tags, and
short renderings of values for error messages. ``rskp_plugin.config`` builds configs from what these return.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import yaml

from .errors import ConfigError


#: At most this many nodes once aliases are expanded: a config has a few hundred; an alias bomb (anchors of
#: anchors, each used several times) expands to billions from a few hundred bytes.
MAX_YAML_NODES = 100_000
#: How much of a value an error message shows.
MAX_SHOWN = 200


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages: a value from a file may be huge (or an alias bomb,
    whose repr would take gigabytes), so its repr is built piecewise and stops at the limit."""
    out = _bounded_repr(value, limit + 1, [0])
    return out if len(out) <= limit else out[: limit - 4] + " ..."


def _bounded_repr(value: Any, limit: int, used: list[int]) -> str:
    if used[0] > limit:
        return ""
    if isinstance(value, (list, tuple, dict)):
        open_, close = "{}" if isinstance(value, dict) else "()" if isinstance(value, tuple) else "[]"
        parts = []
        pairs = value.items() if isinstance(value, dict) else ((None, v) for v in value)
        for key, item in pairs:
            text = _bounded_repr(item, limit, used)
            parts.append(text if key is None else f"{_bounded_repr(key, limit, used)}: {text}")
            if used[0] > limit:
                break
        return open_ + ", ".join(parts) + close
    text = repr(value)[: limit + 1]
    used[0] += len(text)
    return text


class RefusedYAMLError(yaml.constructor.ConstructorError):
    """Valid YAML that a config must not hold: a key given twice, an alias bomb, a recursive alias."""


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what is wrong and where (line, column), without PyYAML's multi-line layout."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        return shown_text(what or type(exc).__name__) + where
    return shown_text(str(exc).replace("\n", " "))


def shown_text(text: str, limit: int = 2 * MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters for a message."""
    return text if len(text) <= limit else text[: limit - 4] + " ..."


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML leaves that undefined; PyYAML keeps
    the last silently) and a document that expands to more than ``MAX_YAML_NODES`` nodes through aliases."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # "<<: *base": the keys given here win over the merged ones, as YAML says
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if first is not key_node:
                    raise RefusedYAMLError(
                        None, None, f"duplicate key {shown(key, 60)} (first given on line {first.start_mark.line + 1});"
                        " give each key once", key_node.start_mark)
        return super().construct_mapping(node, deep)


def _check_size(root: yaml.Node) -> None:
    """Refuse a node tree that expands to more than ``MAX_YAML_NODES`` nodes (aliases counted every time used) or
    holds itself (a recursive alias)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are being sized: the ancestors of the node at hand
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order walk: each distinct node is sized once, so this is linear in the file
        node, done = stack.pop()
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = list(node.value) if isinstance(node, yaml.SequenceNode) else []
        if not done:
            if id(node) in sizes:
                continue
            if id(node) in open_:
                raise RefusedYAMLError(
                    None, None, "an alias (*name) refers to a value that holds it; a config cannot be recursive",
                    node.start_mark)
            open_.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        open_.discard(id(node))
        sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
        if sizes[id(node)] > MAX_YAML_NODES:
            raise RefusedYAMLError(
                None, None, f"it expands to more than {MAX_YAML_NODES} values through its aliases (*name); a "
                "config needs far fewer: write the values out", node.start_mark)


def safe_load_yaml(stream: Any) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys and alias bombs (``_StrictLoader``); raises ``yaml.YAMLError``."""
    loader = _StrictLoader(stream)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The data of a YAML file; ``ConfigError`` names the file and what is wrong with it. A key given twice in one
    mapping, or aliases that expand to more than ``MAX_YAML_NODES`` values, are a ``ConfigError``; messages show
    at most ``MAX_SHOWN`` characters of a value."""
    try:
        with open(path, encoding="utf-8") as fh:
            return safe_load_yaml(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"Config file {os.fspath(path)!r} does not exist; pass an existing YAML file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Config file {os.fspath(path)!r} is not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at "
            f"offset {exc.start}); save it as UTF-8 YAML"
        ) from exc
    except OSError as exc:  # a folder, no permission, an I/O error
        raise ConfigError(
            f"Cannot read config file {os.fspath(path)!r} ({exc.strerror or exc}); pass a YAML file"
        ) from exc
    except RefusedYAMLError as exc:
        raise ConfigError(f"Config file {os.fspath(path)!r} is refused: {yaml_problem(exc)}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {os.fspath(path)!r} is not valid YAML: {yaml_problem(exc)}") from exc


def merge_mappings(base: Mapping[str, Any], top: Any) -> Any:
    """``top`` laid over ``base``: nested mappings merge key by key, any other value of ``top`` replaces
    ``base``'s (what a config layer does to the one below it)."""
    if not isinstance(top, Mapping):
        return top if top is not None else dict(base)
    out: dict[str, Any] = dict(base)
    for key, value in top.items():
        below = out.get(key)
        out[key] = merge_mappings(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return out
