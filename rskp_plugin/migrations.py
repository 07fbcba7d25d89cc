"""Checkpoint migrations: each upgrades the plain payload of a checkpoint written at an older format version
(``checkpoint.FORMAT_VERSION``) to what today's code reads, and leaves an already-current one as it is.
``checkpoint.migrate`` runs those a file needs."""

from __future__ import annotations

from typing import Any, Callable

from .errors import CheckpointError

#: Keys of an evaluation record (``EvalResult.to_dict``) before they named their unit (the values were percent).
LEGACY_RECORD_KEYS = {"map": "map_percent", "average": "avg_map_percent", "cmap": "cmap_percent"}


def _amp_mode_from_bool(data: dict[str, Any]) -> dict[str, Any]:
    """``train.amp`` was a bool whose True (the default) meant bf16 on CUDA only: today's "auto"."""
    stored = data["config"]
    if not isinstance(stored.get("train", {}).get("amp"), bool):
        return data
    train = {**stored["train"], "amp": "auto" if stored["train"]["amp"] else "off"}
    return {**data, "config": {**stored, "train": train}}


def upgrade_record(record: Any) -> Any:
    """An evaluation record with today's keys: files written before the keys named their unit used "map",
    "average" and "cmap" (already percent). Records of a run (``{"epoch", "test", "heldout", ...}``) are
    upgraded entry by entry; anything else is returned unchanged."""
    if not isinstance(record, dict):
        return record
    out = {LEGACY_RECORD_KEYS.get(k, k) if "tiou" in record else k: v for k, v in record.items()}
    for which in ("test", "heldout"):
        if isinstance(out.get(which), dict):
            out[which] = upgrade_record(out[which])
    return out


def _trainer_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The trainer entry with every field (early files lacked the timings)."""
    trainer = data["trainer"]
    if not isinstance(trainer, dict):
        return data
    history = list(trainer.get("history", []))
    filled = {"history": history, "best": trainer.get("best"), "epoch_times": list(trainer.get("epoch_times", [])),
              "eval_times": list(trainer.get("eval_times", [{} for _ in history]))}
    return {**data, "trainer": {**trainer, **filled}}


def _record_units(data: dict[str, Any]) -> dict[str, Any]:
    """The trainer's evaluation records (``history``, ``best``) with keys that name their unit."""
    trainer = data["trainer"]
    if not isinstance(trainer, dict):
        return data
    upgraded = dict(trainer)
    if "history" in trainer:
        upgraded["history"] = [upgrade_record(r) for r in trainer["history"]]
    if "best" in trainer:
        upgraded["best"] = upgrade_record(trainer["best"])
    return {**data, "trainer": upgraded}


def _official_branches(data: dict[str, Any]) -> dict[str, Any]:
    """Before format 2 every run shared all head weights with the propagated branches and distilled every head (the
    keys ``rskp.propagation.branch_parameters`` and ``rskp.teacher.distill`` did not exist), and a config without
    ``rskp.losses.rampup_epochs`` had no ramp-up: write those values into the stored config, so that the model is
    rebuilt, and resumes, as it was trained."""
    stored = data["config"]
    rskp = stored.get("rskp") if isinstance(stored, dict) else None
    if not isinstance(rskp, dict):
        return data
    propagation, teacher = dict(rskp.get("propagation") or {}), dict(rskp.get("teacher") or {})
    losses = dict(rskp.get("losses") or {})
    propagation.setdefault("branch_parameters", [])
    teacher.setdefault("distill", True)
    losses.setdefault("rampup_epochs", 0)
    upgraded = {**rskp, "propagation": propagation, "teacher": teacher, "losses": losses}
    return {**data, "config": {**stored, "rskp": upgraded}}


#: What the built-in heads declared as class attributes up to format 2, where the stored config held None ("ask
#: the head") or a value the head's trait switched off. Format 3 stores the values themselves (recipes).
_FORMAT_2_DECLARATIONS: dict[str, dict[str, Any]] = {
    "facnet": {"propagation.branch_parameters": ["foreground"]},
    "stpn": {"losses.distillation_temperature": 1.0, "propagation.branch_parameters": ["attention"],
             "teacher.distill": False, "losses.attention_normalization": 0.0},
    "wum": {"losses.distillation_temperature": 1.0, "losses.attention_normalization": 0.0},
    "bm": {"losses.attention_normalization": 0.0},
}
_FORMAT_2_DEFAULTS = {"losses.distillation_temperature": 0.2, "propagation.branch_parameters": [],
                      "teacher.distill": True, "propagation.head_gradient": True}


def _recipe_values(data: dict[str, Any]) -> dict[str, Any]:
    """Up to format 2 a config value None meant "the head's class attribute", and a head could switch L_att off
    with ``attention_normalization = False``: write the values the run trained with into the stored config (the
    built-in heads' declarations of that time, else the defaults of that time), and drop ``teacher.label_mask``,
    which format 3 removed (it was measured harmful and never a default)."""
    stored = data["config"]
    rskp = stored.get("rskp") if isinstance(stored, dict) else None
    if not isinstance(rskp, dict):
        return data
    head = str((stored.get("head") or {}).get("name", ""))
    declared = _FORMAT_2_DECLARATIONS.get(head, {})
    sections = {name: dict(rskp.get(name) or {}) for name in ("losses", "teacher", "propagation")}
    if sections["teacher"].pop("label_mask", False):
        raise CheckpointError(f"this checkpoint was trained with rskp.teacher.label_mask=true, which rskp-plugin "
                              "no longer has (it was measured harmful); retrain with the current version")
    for key, default in _FORMAT_2_DEFAULTS.items():
        section, name = key.split(".")
        if sections[section].get(name) is None:
            sections[section][name] = declared.get(key, default)
    if "losses.attention_normalization" in declared:  # the head's trait switched L_att off whatever beta was
        sections["losses"]["attention_normalization"] = declared["losses.attention_normalization"]
    return {**data, "config": {**stored, "rskp": {**rskp, **sections}}}


def _walk_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Up to format 3 the walk's w and lambda were ``rskp.walk_weight`` and ``rskp.walk_temperature``; format 4 keeps
    them with the rest of the walk, as ``rskp.propagation.weight`` and ``rskp.propagation.temperature``."""
    stored = data["config"]
    rskp = stored.get("rskp") if isinstance(stored, dict) else None
    if not isinstance(rskp, dict) or not ({"walk_weight", "walk_temperature"} & set(rskp)):
        return data
    rskp = dict(rskp)
    propagation = dict(rskp.get("propagation") or {})
    for old, new in (("walk_weight", "weight"), ("walk_temperature", "temperature")):
        if old in rskp:
            propagation[new] = rskp.pop(old)
    return {**data, "config": {**stored, "rskp": {**rskp, "propagation": propagation}}}


#: format version -> the upgrades a checkpoint written at that version or earlier needs, in order.
MIGRATIONS: dict[int, tuple[Callable[[dict[str, Any]], dict[str, Any]], ...]] = {
    1: (_amp_mode_from_bool, _trainer_defaults, _record_units, _official_branches),
    2: (_recipe_values,),
    3: (_walk_keys,),
}
