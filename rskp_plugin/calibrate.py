"""``rskp calibrate``: derive a head's RSKP recipe on held-out training videos.

The procedure a head's author runs (and the one the built-in heads' recipes come from):

1. Only the training split is read. A stratified ``heldout_fraction`` of its videos is kept out of training.
2. Every candidate of a small grid of RSKP settings is trained on the rest, once per seed, and each run is scored
   by its best AVG mAP on the held-out videos over the periodic evaluations (the epoch that held-out selection
   would pick). The head alone is a candidate too, so each RSKP candidate gets a paired difference per seed
   (same seed: same initial weights, same video order).
3. The grid changes one mechanism at a time from the defaults (``CANDIDATES``), then takes a greedy forward step:
   the best single change together with each other one (``second_round``). The chosen candidate is the one with
   the best mean held-out AVG, unless it beats the defaults by less than ``min_gain`` AVG points: the simpler
   recipe is kept then (the seeds' noise is larger than such a difference).
4. The recipe (the chosen candidate's values plus any ``rskp`` values the user set for all candidates) is written
   as a recipe file with the evidence: every candidate's held-out AVG per seed, mean, std and paired difference.

Recipes from several data sets are combined with ``combine``: the candidate with the best mean paired difference
over the sets (each set weighing the same), with the same ``min_gain`` rule against the defaults.

The test split is never loaded: ``calibration_data`` reads the training split alone (``tests/test_calibrate.py``
gives it a test split that cannot be read).
"""

from __future__ import annotations

import concurrent.futures as futures
import datetime
import json
import math
import multiprocessing
import time
from typing import Any, Callable, Sequence

import attrs
import numpy as np
import torch

from .config import RSKPConfig, check_values
from .config_io import from_mapping, non_default_mapping
from .errors import ConfigError
from .recipes import Recipe, flatten

#: name -> (the overrides of a candidate, what it tests); "own copies" is filled per head.
CANDIDATES: dict[str, tuple[dict[str, Any], str]] = {
    "defaults": ({}, "RSKP's defaults: what a head that declares nothing gets"),
    "own copies": ({}, "the propagated branches keep their own copy of the head's attention-like parameters "
                       "(rskp.propagation.branch_parameters)"),
    "no distillation": ({"teacher.distill": False}, "the main branch does not distil the teacher (eq. 7 off)"),
    "temperature": ({}, "distillation at the other temperature: the official 0.2 (tuned for FAC-Net's cosine logits "
                        "scaled by 20) where the default is the paper's 1, and the other way round"),
    "no ramp-up": ({"losses.rampup_epochs": 0}, "RSKP's terms at full weight from the first step (official)"),
    "no memory": ({"memory.enabled": False}, "no memory bank: the intra-video walk alone"),
    "no head gradient": ({"propagation.head_gradient": False}, "the propagated branches train the embedding and "
                                                               "the summariser only"),
    "foreground walk": ({"summarizer.region": "foreground"}, "only the foreground part of each snippet is "
                        "summarised and walked, the rest kept (supplement Table 2): for instances covering much of "
                        "a video, where walking every snippet blurs action into background"),
}
#: The grids: "quick" covers the mechanisms that moved results most when this project measured them by hand
#: (own copies, distillation and its temperature); "full" adds the ramp-up, the memory bank, the head gradient and
#: the foreground walk (what made RSKP work on ActivityNet-shaped data, benchmarks/RESULTS.md "ActivityNet-shaped").
GRIDS = {
    "quick": ("defaults", "own copies", "no distillation", "temperature"),
    "full": ("defaults", "own copies", "no distillation", "temperature", "no ramp-up", "no memory",
             "no head gradient", "foreground walk"),
}
ALONE = "head alone"
#: The ``rskp`` keys the grid sets. Evidence records their defaults at calibration time, so a recipe derived from it
#: names every value that differs from the defaults of the version that reads it (``recipe_values``).
GRID_KEYS = ("teacher.distill", "losses.distillation_temperature", "propagation.branch_parameters",
             "losses.rampup_epochs", "memory.enabled", "propagation.head_gradient", "summarizer.region")
#: The two distillation temperatures the grid compares: the official code's and the paper's eq. 7.
TEMPERATURES = (0.2, 1.0)


def grid_defaults() -> dict[str, Any]:
    """The current defaults of ``GRID_KEYS`` (plain values)."""
    flat = flatten(non_default_mapping(RSKPConfig(), everything=True))
    return {key: flat[key] for key in GRID_KEYS}


def attention_like_parameters(head: torch.nn.Module, feature_dim: int) -> tuple[str, ...]:
    """The parameters of ``head`` that its forward uses but neither ``embed`` nor ``classify`` does (an attention
    module, an attention centre), as the shortest dotted prefixes that cover exactly them.

    These are the parameters that can localise on their own and that walked features can blur; the embedding and
    the classifier are what RSKP's propagated branches are meant to train.
    """
    head = head.eval()
    params = dict(head.named_parameters())
    gen = torch.Generator().manual_seed(0)

    def used(loss_of: Callable[[], torch.Tensor]) -> set[str]:
        for p in params.values():
            p.grad = None
        loss_of().backward()
        return {n for n, p in params.items() if p.grad is not None and bool(p.grad.abs().sum() > 0)}

    x = torch.randn(1, 12, feature_dim, generator=gen)
    mask = torch.ones(1, 12, dtype=torch.bool)
    feats = torch.randn(1, 12, head.embed_dim, generator=gen)

    def forward_loss() -> torch.Tensor:
        out = head(feats, mask)
        tensors = [t for t in (out.video_scores, out.tcam, out.attention, out.cas, out.score_cas) if t is not None]
        return sum(t.float().sum() for t in tensors)

    embedding = used(lambda: head.embed(x, mask).sum())
    classifier = used(lambda: head.classify(feats).sum())
    rest = used(forward_loss) - embedding - classifier
    for p in params.values():
        p.grad = None
    return _prefixes(sorted(rest), list(params))


def _prefixes(chosen: list[str], names: list[str]) -> tuple[str, ...]:
    """The shortest dotted prefixes whose parameters are exactly ``chosen`` (``attention.0.weight`` and
    ``attention.0.bias``, with nothing else under ``attention``, become ``attention``)."""
    out: list[str] = []
    for name in chosen:
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            under = [n for n in names if n == prefix or n.startswith(prefix + ".")]
            if all(n in chosen for n in under):
                if prefix not in out:
                    out.append(prefix)
                break
    return tuple(out)


def candidate_grid(grid: str, own: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The first-round candidates of ``grid``: name -> overrides (dotted ``rskp`` keys). "own copies" is left out
    for a head without attention-like parameters."""
    if grid not in GRIDS:
        raise ConfigError(f"--grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    out: dict[str, dict[str, Any]] = {}
    for name in GRIDS[grid]:
        if name == "own copies":
            if own:
                out[name] = {"propagation.branch_parameters": list(own)}
            continue
        if name == "temperature":
            current = RSKPConfig().losses.distillation_temperature
            other = next((t for t in TEMPERATURES if t != current), TEMPERATURES[0])
            out[f"tau {other:g}"] = {"losses.distillation_temperature": other}
            continue
        out[name] = dict(CANDIDATES[name][0])
    return out


def second_round(single: dict[str, dict[str, Any]], gains: dict[str, float]) -> dict[str, dict[str, Any]]:
    """The second round, a greedy forward step: the best single change, when it beats the defaults, together with
    each other single change that can act beside it (different keys, and not a distillation setting beside "no
    distillation", which makes it moot). Changes interact: a change that hurt beside one mechanism (own copies of
    the attention while a collapsing distillation dominates) can help once the best change removed that mechanism.
    Returns name -> overrides (empty when no single change beats the defaults)."""
    ranked = [n for n in sorted(gains, key=lambda n: -gains[n]) if n not in ("defaults", ALONE)]
    if not ranked or gains[ranked[0]] <= 0:
        return {}
    best = ranked[0]
    out = {}
    for other in ranked[1:]:
        if not set(single[best]) & set(single[other]) and not _moot(single[best], single[other]):
            out[f"{best} + {other}"] = {**single[best], **single[other]}
    return out


def reusable(previous: Recipe, seeds: Sequence[int], epochs: int, data: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Results of an earlier calibration of the same head, data, epochs and seeds (``rskp calibrate --reuse``):
    (candidate, seed) -> {"heldout_avg", "epoch", "seconds": 0.0, "overrides"} for every candidate it trained."""
    ev = previous.evidence
    if ev.get("data") != data or ev.get("epochs") != epochs:
        raise ConfigError(f"{previous.source} calibrated on {ev.get('data')!r} for {ev.get('epochs')} epochs, not "
                          f"{data!r} for {epochs}: reuse a calibration of the same data and schedule")
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for row in ev.get("candidates", []):
        for seed, avg, epoch in zip(ev.get("seeds", []), row["heldout_avg"], row["epochs"]):
            if seed in seeds:
                out[(row["name"], seed)] = {"heldout_avg": float(avg), "epoch": int(epoch), "seconds": 0.0,
                                            "overrides": row["overrides"]}
    return out


def _moot(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether one of two changes switches off the term the other tunes (distillation off and its temperature)."""
    off = {**a, **b}.get("teacher.distill") is False
    return off and "losses.distillation_temperature" in {**a, **b}


# ------------------------------------------------------------------------------------------------ running
def calibration_data(config: Any, fraction: float) -> tuple[Any, Any]:
    """(training videos, held-out videos) of ``config.data``: the training split alone is read, then split
    (stratified by label, ``VideoDataset.split``, seeded by ``data.seed``)."""
    from .engine.build import load_splits

    (train,) = load_splits(config, ("train",))
    return train.split(fraction, seed=config.data.seed)


def train_candidate(config_dict: dict[str, Any], fraction: float) -> dict[str, Any]:
    """One calibration run (a worker process runs it): train on the training part, evaluate on the held-out part
    at every evaluation epoch; returns the best held-out AVG, its epoch and the held-out curve."""
    from .engine import ExperimentConfig, Trainer
    from .engine.build import Datasets

    config = from_mapping(ExperimentConfig, config_dict)
    started = time.perf_counter()
    fit_part, held = calibration_data(config, fraction)
    # the held-out videos take the place of the evaluated set; nothing else is read
    datasets = Datasets(train=fit_part, test=held, heldout=None)
    run = attrs.evolve(config, train=attrs.evolve(config.train, selection="test", output_dir="", diagnostics=False))
    fit = Trainer(run, datasets=datasets, progress=False).fit()
    curve = [round(float(r["test"]["avg_map_percent"]), 4) for r in fit.history]
    return {"heldout_avg": float(fit.best["test"]["avg_map_percent"]), "epoch": int(fit.best["epoch"]),
            "curve": curve, "seconds": round(time.perf_counter() - started, 1), "heldout_videos": len(held.videos)}


def run_all(jobs: Sequence[tuple[str, int, dict[str, Any]]], fraction: float, workers: int,
            report: Callable[[str, int, dict[str, Any]], None]) -> dict[tuple[str, int], dict[str, Any]]:
    """Train every (candidate, seed, config dict) of ``jobs``, ``workers`` at a time in separate processes (one
    torch thread each), calling ``report`` as each finishes; returns (candidate, seed) -> result."""
    results: dict[tuple[str, int], dict[str, Any]] = {}
    if workers <= 1:
        for name, seed, cfg in jobs:
            results[(name, seed)] = train_candidate(cfg, fraction)
            report(name, seed, results[(name, seed)])
        return results
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch thread pool shared with the parent
    with futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending = {pool.submit(train_candidate, cfg, fraction): (name, seed) for name, seed, cfg in jobs}
        try:
            for done in futures.as_completed(pending):
                name, seed = pending[done]
                results[(name, seed)] = done.result()
                report(name, seed, results[(name, seed)])
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return results


# ------------------------------------------------------------------------------------------------ choosing
def summarize(names: Sequence[str], overrides: dict[str, dict[str, Any]], seeds: Sequence[int],
              results: dict[tuple[str, int], dict[str, Any]]) -> list[dict[str, Any]]:
    """One evidence row per candidate: held-out AVG per seed, mean, std, and the paired difference to the head
    alone per seed, mean and std."""
    alone = [results[(ALONE, s)]["heldout_avg"] for s in seeds]
    rows = []
    for name in names:
        avg = [results[(name, s)]["heldout_avg"] for s in seeds]
        diff = [a - b for a, b in zip(avg, alone)]
        rows.append({
            "name": name, "overrides": overrides.get(name, {}),
            "heldout_avg": [round(a, 2) for a in avg], "mean": round(float(np.mean(avg)), 2),
            "std": round(_std(avg), 2), "epochs": [results[(name, s)]["epoch"] for s in seeds],
            "diff_to_alone": [round(d, 2) for d in diff], "diff_mean": round(float(np.mean(diff)), 2),
            "diff_std": round(_std(diff), 2),
        })
    return rows


def _std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def choose(rows: Sequence[dict[str, Any]], min_gain: float, key: str = "diff_mean") -> str:
    """The RSKP candidate with the best ``key``, unless it beats "defaults" by less than ``min_gain`` (then
    "defaults"); ties go to the candidate listed first (the simpler one)."""
    rskp = [r for r in rows if r["name"] != ALONE]
    best = max(rskp, key=lambda r: r[key])  # max keeps the first of equal values
    defaults = next((r for r in rskp if r["name"] == "defaults"), None)
    if defaults is not None and best[key] - defaults[key] < min_gain:
        return "defaults"
    return best["name"]


def combine(recipes: Sequence[Recipe], min_gain: float) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Choose one candidate over several calibrations of the same head (one per data set): the best mean over the
    sets of the mean paired difference to the head alone, with ``choose``'s rule. Returns (name, overrides, one
    row per candidate present in every set with its per-set differences)."""
    if not recipes:
        raise ConfigError("nothing to combine: pass recipe files written by 'rskp calibrate'")
    heads = {r.head for r in recipes}
    if len(heads) > 1:
        raise ConfigError(f"the recipe files are for different heads ({', '.join(sorted(heads))}); combine one "
                          "head's calibrations")
    defaults = [calibrated_defaults(r) for r in recipes]
    if any(d != defaults[0] for d in defaults):
        raise ConfigError("the calibrations ran with different defaults (evidence.defaults); combine calibrations of "
                          "one version")
    tables = []
    for r in recipes:
        rows = r.evidence.get("candidates")
        if not rows:
            raise ConfigError(f"{r.source} holds no calibration evidence (evidence.candidates); combine files "
                              "written by 'rskp calibrate'")
        tables.append({_candidate_key(row): row for row in rows})
    # candidates in every set, matched by their settings: the second rounds of two sets name the same pair in the
    # order of each set's best single change ("a + b" and "b + a"); a pair of changes that cannot act together
    # (older calibrations tried some) is left out
    keys = [k for k in tables[0] if all(k in t for t in tables) and not _moot(tables[0][k]["overrides"], {})]
    rows = []
    for key in keys:
        per_set = [t[key]["diff_mean"] for t in tables]
        rows.append({"name": tables[0][key]["name"], "overrides": tables[0][key]["overrides"], "diff_per_set": per_set,
                     "diff_mean": round(float(np.mean(per_set)), 2)})
    chosen = choose(rows, min_gain)
    return chosen, next(r["overrides"] for r in rows if r["name"] == chosen), rows


def _candidate_key(row: dict[str, Any]) -> str:
    """What identifies a candidate across calibrations: its settings (the head alone by its name, since it has
    none and neither have the defaults)."""
    if row["name"] == ALONE:
        return ALONE
    return json.dumps(row.get("overrides") or {}, sort_keys=True)


def recipe_values(base: dict[str, Any], chosen: dict[str, Any], calibrated: dict[str, Any]) -> dict[str, Any]:
    """The recipe: the ``rskp`` values set for every candidate (``--set rskp.…``), and the chosen candidate's
    settings of ``GRID_KEYS`` (the defaults it ran with, ``calibrated``, with its overrides) wherever they differ
    from today's defaults, so a recipe stays what was measured when a default changes."""
    settings = {**calibrated, **chosen}
    if settings.get("teacher.distill") is False:  # a temperature does nothing without distillation
        settings.pop("losses.distillation_temperature", None)
    current = grid_defaults()
    values = {**base, **{k: v for k, v in settings.items() if k not in current or v != current[k]}}
    return check_values(values, source="the calibrated recipe")


def calibrated_defaults(recipe: Recipe) -> dict[str, Any]:
    """The defaults of ``GRID_KEYS`` a calibration ran with (``evidence.defaults``)."""
    defaults = recipe.evidence.get("defaults")
    if not isinstance(defaults, dict):
        raise ConfigError(f"{recipe.source} does not record the defaults it was calibrated with (evidence.defaults); "
                          "calibrate again with this version")
    return defaults


def evidence_header(command: str) -> str:
    """The comment lines at the top of a recipe file."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"# Written by rskp calibrate on {stamp}:\n#   {command}\n# The values under 'rskp' are the "
            "recipe; 'evidence' is what they were chosen on (held-out training videos only).\n")


def fmt(value: float) -> str:
    """A number for the table (nan as '-')."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.2f}"
