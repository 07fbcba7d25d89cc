"""A head's RSKP recipe: the ``rskp`` config values a head trains with, recorded as data.

A recipe is a flat mapping of dotted keys under ``rskp`` to values, e.g. ``{"propagation.branch_parameters":
["foreground"]}``. A head ships one beside its registration (``HeadSpec(recipe=...)``, usually read from a recipe
file that ``rskp calibrate`` wrote); a user may pass another file (``head.recipe: PATH``, ``--head-recipe PATH``) or
none (``head.recipe: none``). Experiment configs are resolved in layers, each overriding the one before:

    defaults  <  the head's recipe  <  the YAML config  <  command-line flags  <  --set

into concrete values, which runs record in full (``config.yaml``, ``results.json``, checkpoints), so that
``rskp train --config runs/X/config.yaml`` retrains the same run even after a head's recipe changed.

A recipe file (YAML) holds ``head`` (the head it was derived for), ``rskp`` (the dotted values) and, when
``rskp calibrate`` wrote it, ``evidence``: the candidates it trained and their held-out scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import attrs
import yaml

from .config import RSKPConfig, check_values
from .config_io import non_default_mapping, set_values
from .errors import ConfigError
from .yaml_io import safe_load_yaml, yaml_problem

#: ``head.recipe`` values that are not files.
BUILTIN = "builtin"
NONE = "none"


@attrs.frozen
class Recipe:
    """A recipe as read from a file or a ``HeadSpec``.

    Attributes:
        values: dotted ``rskp`` keys -> values (plain YAML data).
        head: the head it was derived for ("" if unknown).
        evidence: what ``rskp calibrate`` recorded (empty for a hand-written recipe).
        source: where it came from, for messages ("recipe file x.yaml", "the facnet head's recipe").
    """

    values: dict[str, Any]
    head: str = ""
    evidence: dict[str, Any] = attrs.field(factory=dict)
    source: str = ""


def nested(values: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys -> the nested mapping a YAML config holds (``{"a.b": 1}`` -> ``{"a": {"b": 1}}``)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The inverse of ``nested``: leaves of a nested mapping under dotted keys."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def apply(values: Mapping[str, Any], config: RSKPConfig | None = None) -> RSKPConfig:
    """``config`` (default: the defaults) with a recipe's values set."""
    return set_values(RSKPConfig() if config is None else config, dict(values))


def read_recipe(path: Any) -> Recipe:
    """Read a recipe file (``rskp calibrate`` writes them): a path, or a package resource (``importlib.resources``)
    for the recipes a plugin ships; ``ConfigError`` names the file and what is wrong."""
    where = f"recipe file {str(path)!r}"
    try:
        text = (path if hasattr(path, "read_text") else Path(path)).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{where} does not exist; pass a file written by 'rskp calibrate', 'builtin' or "
                          "'none'") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {where} ({exc}); pass a UTF-8 YAML file") from exc
    try:
        data = safe_load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {yaml_problem(exc)}") from exc
    if not isinstance(data, Mapping) or "rskp" not in data:
        raise ConfigError(f"{where} must be a mapping with an 'rskp' entry of dotted keys (and optionally 'head' "
                          "and 'evidence'), as 'rskp calibrate' writes")
    values = data["rskp"] if data["rskp"] is not None else {}
    return Recipe(values=check_values(values, source=where), head=str(data.get("head") or ""),
                  evidence=dict(data.get("evidence") or {}), source=where)


def recipe_yaml(recipe: Recipe, header: str = "") -> str:
    """A recipe file's text (``read_recipe`` reads it back to the same values)."""
    body = {"head": recipe.head, "rskp": dict(recipe.values)}
    if recipe.evidence:
        body["evidence"] = recipe.evidence
    text = yaml.dump(body, Dumper=_PlainDumper, sort_keys=False, default_flow_style=None, width=110)
    return header + text


class _PlainDumper(yaml.SafeDumper):
    """Writes a value each time it occurs: no anchors and aliases (``&id001``) in a file people read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def head_recipe(name: str) -> Recipe:
    """The recipe registered with head ``name`` (empty for a head that declares none)."""
    from .plugins import create_head, head_specs

    specs = head_specs()
    if name not in specs:
        create_head(name)  # raises the UnknownHeadError (with suggestions) or the plugin's load error
    spec = specs[name]
    return Recipe(values=dict(spec.recipe), head=name, evidence={}, source=f"the {name} head's recipe")


def resolve(head: str, setting: str) -> Recipe:
    """The recipe ``head.recipe`` names: ``builtin`` (the head's own), ``none`` or a recipe file."""
    if setting == NONE:
        return Recipe(values={}, head=head, source="no recipe (head.recipe: none)")
    if setting == BUILTIN:
        from .plugins import head_specs

        if head not in head_specs():  # building the head fails later with the suggestions; reading data need not
            return Recipe(values={}, head=head, source=f"no recipe (head {head!r} is not installed)")
        return head_recipe(head)
    recipe = read_recipe(setting)
    if recipe.head and recipe.head != head:
        raise ConfigError(f"{recipe.source} was derived for head {recipe.head!r}, not {head!r}; pass the recipe of "
                          f"{head!r}, or 'builtin'")
    return recipe


def for_head(name: str, config: RSKPConfig | None = None) -> RSKPConfig:
    """The ``RSKPConfig`` a registered head trains with from Python: ``config`` (default: the defaults) with the
    head's recipe applied, e.g. ``RSKPWrapper(create_head("stpn"), recipes.for_head("stpn"))``."""
    return apply(head_recipe(name).values, config)


def provenance(recipe: Recipe) -> list[tuple[str, Any, Any, str]]:
    """Every ``rskp`` key with (key, default value, resolved value, where the value comes from) under ``recipe``."""
    defaults = flatten(non_default_mapping(RSKPConfig(), everything=True))
    resolved = flatten(non_default_mapping(apply(recipe.values), everything=True))
    rows = []
    for key, default in defaults.items():
        source = recipe.source if key in recipe.values else "default"
        rows.append((key, default, resolved[key], source))
    return rows
