"""How a run continues from a checkpoint: the config it resumes with, checked against the one also given."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import attrs

from ..config_io import apply_overrides, from_mapping, set_values
from ..errors import ConfigError
from .config import ExperimentConfig, config_to_dict


def resumed_config(
    path: str | os.PathLike[str],
    data: dict[str, Any],
    *,
    overrides: Sequence[str] = (),
    values: dict[str, Any] | None = None,
    expect: ExperimentConfig | None = None,
) -> tuple[ExperimentConfig, Path]:
    """The config a resumed run trains with, and the checkpoint file it continues.

    The stored config (migrated by ``load_checkpoint``) is used, with its run folder set to the checkpoint's folder
    (a copied run folder is continued where it is, not where it was first written); ``values`` (typed, dotted keys)
    and then ``overrides`` (``train.epochs=300``) may extend or redirect the run.

    Args:
        path: the checkpoint or a run folder (its ``last.pt``).
        data: the loaded checkpoint.
        expect: a config the resumed one must equal (run folders aside); a difference is a ``ConfigError``.
    """
    config = from_mapping(ExperimentConfig, data["config"])
    checkpoint = Path(path) / "last.pt" if Path(path).is_dir() else Path(path)
    config = attrs.evolve(config, train=attrs.evolve(config.train, output_dir=os.fspath(checkpoint.parent)))
    stored = config
    config = apply_overrides(set_values(config, values or {}), list(overrides))
    if expect is not None:
        check_same_run(config, expect, checkpoint)
    check_config_file(checkpoint.parent / "config.yaml", stored, config)
    return config, checkpoint


def check_config_file(path: Path, stored: ExperimentConfig, resumed: ExperimentConfig) -> None:
    """``ConfigError`` when the run folder's ``config.yaml`` says something else than the checkpoint (it was edited):
    resuming would ignore the edit and then write over it. The file may also equal the resumed config (the same
    ``--set`` overrides again: the run was stopped after it wrote them, before a checkpoint)."""
    from ..config_io import load_yaml
    from .record import absolute_data_root

    if not path.is_file():
        return
    try:
        written = load_yaml(ExperimentConfig, path)
    except ConfigError as exc:
        raise ConfigError(f"--resume: the run's {exc}; fix or delete {os.fspath(path)} (the checkpoint holds the "
                          "run's config; the file is written again from it)") from exc

    def flat(config: ExperimentConfig) -> dict[str, Any]:
        return _flat(config_to_dict(absolute_data_root(config)))

    ours = flat(written)

    def differing(config: ExperimentConfig) -> tuple[list[str], dict[str, Any]]:
        theirs = flat(config)
        keys = sorted(set(ours) | set(theirs))
        return [k for k in keys if k != "train.output_dir" and ours.get(k) != theirs.get(k)], theirs

    differ, theirs = differing(stored)
    if not differ or not differing(resumed)[0]:
        return
    shown = "; ".join(f"{k}: {ours.get(k)!r} in the file, {theirs.get(k)!r} in the checkpoint" for k in differ[:4])
    more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
    raise ConfigError(
        f"--resume: {os.fspath(path)} differs from the config stored in the checkpoint ({shown}{more}); resuming "
        "would ignore the edit and write over it. Pass the change as --set KEY=VALUE (e.g. --set "
        f"{differ[0]}=...), undo the edit, or start a new run with --config {os.fspath(path)} --output-dir DIR"
    )


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: data}


def check_same_run(config: ExperimentConfig, expect: ExperimentConfig, checkpoint: Path) -> None:
    """``ConfigError`` listing the keys (run folders aside) where a resumed config differs from ``expect``."""

    def flat(data: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(data, dict):
            return {k: v for key, value in data.items() for k, v in flat(value, f"{prefix}{key}.").items()}
        return {prefix[:-1]: data}

    ours, theirs = flat(config_to_dict(config)), flat(config_to_dict(expect))
    differ = [k for k in sorted(set(ours) | set(theirs)) if k != "train.output_dir" and ours.get(k) != theirs.get(k)]
    if differ:
        shown = "; ".join(f"{k}: {ours.get(k)!r} in the checkpoint, {theirs.get(k)!r} in --config" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise ConfigError(
            f"--resume {os.fspath(checkpoint)} continues the run stored in the checkpoint, whose config differs "
            f"from --config ({shown}{more}). Drop --config to resume as stored (--set KEY=VALUE changes a key), or "
            "start a new run without --resume"
        )
