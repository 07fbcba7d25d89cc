"""ActivityNet-format JSON: ground truth ``{"database": {video: {"subset", "annotations": [...]}}}`` and results
``{"results": {video: [{"label", "score", "segment"}]}}`` (docs/evaluation.md 3.1), plus the ``taxonomy`` that carries a
dataset's full class list."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

from ..errors import DataError


def read_activitynet_json(
    obj: Mapping[str, Any] | str | os.PathLike, what: str, key: str, *, warning: type[Warning] = UserWarning
) -> tuple[dict[str, Any], str]:
    """Read an ActivityNet-format JSON file (or take an already loaded object) holding the object ``key``.

    A key given twice in one object (a video listed twice) is legal JSON; the last one is used, as the official
    ActivityNet code (``json.load``) uses it, with a warning of category ``warning`` that counts and names them.

    Args:
        obj: the path of the JSON file, or the loaded object.
        what: what the file is, for messages ("ground-truth", "predictions").
        key: the top-level object it must hold ("database", "results").
        warning: the category of the warning about keys given twice.

    Returns:
        ``(object, source)``: the whole JSON object and a name for messages (the path, or ``"<what object>"``).

    Raises:
        DataError: the file is missing, unreadable or not JSON, or has no ``key`` object.
    """
    if isinstance(obj, Mapping):
        data, source = obj, f"<{what} object>"
    else:
        source = os.fspath(obj)
        path = Path(obj)
        if not path.is_file():
            from .npy import why_not_a_file

            raise DataError(f"missing {what} JSON: {source} {why_not_a_file(path)}; check the path (an "
                            "ActivityNet-format JSON file, e.g. THUMOS14 gt.json)")
        twice: list[str] = []

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, value in items:
                if name in out:
                    twice.append(name)
                out[name] = value
            return out

        try:
            with path.open(encoding="utf-8") as handle:
                data = json.load(handle, object_pairs_hook=pairs)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {what} JSON: {source} is not valid JSON ({exc}); regenerate or fix the file"
                            ) from exc
        except OSError as exc:
            raise DataError(f"cannot read {what} JSON {source}: {exc}") from exc
        if twice:
            shown = ", ".join(repr(name[:80]) for name in sorted(set(twice))[:3])
            warnings.warn(f"{what} {source}: {len(twice)} key(s) given twice in one object ({shown}); the last of "
                          "each is used, as the official ActivityNet code does, and the others are ignored",
                          warning, stacklevel=3)
    if not isinstance(data, Mapping) or not isinstance(data.get(key), Mapping):
        raise DataError(
            f'{what} {source} has no "{key}" object; expected the ActivityNet {what} format, an object with a '
            f"'{key}' key: {{\"{key}\": {{video_id: ...}}}} (docs/evaluation.md 3.1)"
        )
    return dict(data), source


def class_taxonomy(class_names: Sequence[str]) -> list[dict[str, Any]]:
    """An ActivityNet ``taxonomy`` listing ``class_names`` as the leaves under one root: how a ground-truth file
    carries the dataset's full class list (the official evaluator ignores it)."""
    root = {"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None}
    return [root] + [{"nodeId": i, "nodeName": name, "parentId": 0, "parentName": "Root"}
                     for i, name in enumerate(class_names, start=1)]


def taxonomy_leaves(taxonomy: Any) -> list[str]:
    """Node names that are no node's parent: the classes of an ActivityNet taxonomy (malformed entries ignored)."""
    if not isinstance(taxonomy, list):
        return []
    nodes = [n for n in taxonomy if isinstance(n, Mapping) and isinstance(n.get("nodeName"), str)]
    parents = {n.get("parentName") for n in nodes}
    return [n["nodeName"] for n in nodes if n["nodeName"] not in parents]
