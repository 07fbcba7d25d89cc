"""The runs ``rskp bench`` trains: one configured run, a head alone and with RSKP over seeds (Table 6), and the rows
of the paper's ablation tables (``--ablation``), with equal configs trained once per seed and shared by their rows.
``rskp_plugin.bench`` parses the command line and prints the results.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import attrs
import numpy as np

from .ablations import AblationRow, missing_requirement, resolve_rows
from .bench_results import VARIANTS, add_gains, diagnose, summarize
from .errors import ConfigError


def train_run(cfg: Any, datasets: Any, progress: Any = None, log: Any = None, label: str = "") -> dict[str, Any]:
    """Train one configured run (head name and seed set) and return its per-seed record of the ``--output`` schema.

    Args:
        cfg: the full experiment config of the run.
        datasets: the run's videos.
        progress: a running rich ``Progress`` whose first task counts runs, or None.
        log: rich console for one line per finished run, or None.
        label: what the log line and the progress bar call the run, e.g. "facnet head+rskp".
    """
    from .engine import Trainer
    from .engine.diagnostics import metrics_line

    seed = cfg.train.seed
    started = time.perf_counter()
    trainer = Trainer(cfg, datasets=datasets, progress=progress if progress is not None else False)
    fit = trainer.fit()
    chosen = fit.best["test"]
    record = {
        "seed": seed, "map_percent": chosen["map_percent"], "avg_map_percent": chosen["avg_map_percent"],
        "cmap_percent": chosen["cmap_percent"], "epoch": fit.best["epoch"],
        "final_avg_map_percent": fit.final["test"]["avg_map_percent"],
        "per_class_ap_percent": chosen["per_class_ap_percent"],
        "seconds": time.perf_counter() - started,
        "epoch_seconds": float(np.mean(fit.epoch_times)) if fit.epoch_times else None,
        # per evaluation epoch (README "Diagnostics")
        "diagnostics": [metrics_line(r, t) for r, t in zip(fit.history, fit.eval_times)],
    }
    summary = (f"{label} seed {seed}: AVG mAP {chosen['avg_map_percent']:.2f} % (epoch "
               f"{fit.best['epoch']}, selected on {fit.selection})")
    if log is not None:
        log.log(f"{summary}, last epoch {fit.final['test']['avg_map_percent']:.2f} %, {record['seconds']:.0f} s")
    if progress is not None:
        progress.update(progress.task_ids[0], advance=1, description=f"benchmark runs (last: {summary})")
    return record


def run_head(
    head: str, config: Any, datasets: Any, seeds: Sequence[int], progress: Any = None, log: Any = None,
    on_pair: Any = None,
) -> dict[str, Any]:
    """Train both variants for every seed; return the result object of the ``--output`` schema.

    Args:
        head: registered head name.
        config: the recipe (head name, seed and ``rskp_enabled`` are set per run).
        datasets: shared by every run.
        seeds: training seeds.
        progress: a running rich ``Progress`` whose first task counts runs, or None.
        log: rich console for one line per finished run, or None.
        on_pair: called with the result object of the seeds finished so far after each seed's pair of runs (the
            benchmark writes it, so an interrupted run keeps every finished pair), or None.
    """
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    configs: dict[str, Any] = {}
    done: list[int] = []
    for seed in seeds:
        for variant in VARIANTS:
            cfg = attrs.evolve(
                config, head=attrs.evolve(config.head, name=head), train=attrs.evolve(config.train, seed=seed),
                rskp_enabled=variant == "head+rskp",
            )
            configs[variant] = cfg
            runs[variant].append(train_run(cfg, datasets, progress, log, label=f"{head} {variant}"))
        done.append(seed)
        if on_pair is not None and len(done) < len(seeds):
            on_pair(head_result(head, config, configs, runs, done))
    return head_result(head, config, configs, runs, done)


def head_result(head: str, config: Any, configs: dict[str, Any], runs: dict[str, list[dict[str, Any]]],
                seeds: Sequence[int]) -> dict[str, Any]:
    """The result object of the ``--output`` schema for the runs of ``seeds`` (both variants each)."""
    from .engine import config_to_dict

    rows = [{"variant": variant, **summarize(runs[variant]), "per_seed": list(runs[variant])} for variant in VARIANTS]
    result = {
        "head": head,
        "data": config.data.source,
        "seeds": list(seeds),
        "tiou": list(config.train.tiou),
        "rows": rows,
        "selection": config.train.selection,
        "epochs": config.train.epochs,
        "diagnosis": diagnose(rows),
        "config": config_to_dict(configs["head+rskp"]),
    }
    add_gains(result)
    return result


@attrs.frozen
class AblationPlan:
    """What ``--ablation`` trains: every selected row with its config, the rows skipped and why, and the distinct
    configs (rows with equal configs share one run per seed).

    Attributes:
        rows: ``(table, row, config)`` of every row that runs, in table order.
        skipped: ``(table, row, reason)`` of every row that cannot run here.
        configs: distinct run configs, keyed by their JSON form, in first-use order.
    """

    rows: list[tuple[str, AblationRow, Any]]
    skipped: list[tuple[str, AblationRow, str]]
    configs: dict[str, Any]

    def key(self, cfg: Any) -> str:
        """The key of ``cfg`` in ``configs``."""
        return _config_key(cfg)

    def names(self, key: str) -> list[str]:
        """The distinct names of the rows that run the config ``key`` (for log lines)."""
        return list(dict.fromkeys(row.name for _, row, cfg in self.rows if _config_key(cfg) == key))


def _config_key(cfg: Any) -> str:
    import json

    from .engine import config_to_dict

    return json.dumps(config_to_dict(cfg), sort_keys=True, default=str)


def plan_ablation(config: Any, tables: Sequence[str]) -> AblationPlan:
    """Apply every row's overrides of ``tables`` to ``config`` (an invalid key or value raises ``ConfigError`` naming
    the row, before anything trains), set aside the rows whose optional dependency is missing, and find the distinct
    configs."""
    rows, skipped = [], []
    for table, row, cfg in resolve_rows(config, tables):
        reason = missing_requirement(row)
        if reason is None:
            rows.append((table, row, cfg))
        else:
            skipped.append((table, row, reason))
    configs: dict[str, Any] = {}
    for _, _, cfg in rows:
        configs.setdefault(_config_key(cfg), cfg)
    return AblationPlan(rows=rows, skipped=skipped, configs=configs)


def run_ablation(
    head: str, plan: AblationPlan, datasets: Any, seeds: Sequence[int], progress: Any = None, log: Any = None
) -> list[dict[str, Any]]:
    """Train every distinct config of ``plan`` for every seed; return one result object per table (the ``--output``
    schema of Table 6 with an ``ablation`` name, one row per table row, and the rows ``skipped``).

    Args:
        head: registered head name.
        plan: from ``plan_ablation`` (head name and seed are set per run).
        datasets: shared by every run.
        seeds: training seeds.
        progress: a running rich ``Progress`` whose first task counts runs, or None.
        log: rich console for one line per finished run, or None.
    """
    from .engine import config_to_dict

    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in plan.configs}
    for seed in seeds:
        for key, cfg in plan.configs.items():
            cfg = attrs.evolve(cfg, head=attrs.evolve(cfg.head, name=head), train=attrs.evolve(cfg.train, seed=seed))
            label = f"{head} {' = '.join(plan.names(key))}"
            runs[key].append(train_run(cfg, datasets, progress, log, label=label))
    results = []
    tables = list(dict.fromkeys([t for t, _, _ in plan.rows] + [t for t, _, _ in plan.skipped]))
    for table in tables:
        rows = []
        for t, row, cfg in plan.rows:
            if t != table:
                continue
            per_seed = [dict(r) for r in runs[plan.key(cfg)]]
            rows.append({"variant": row.name, "rskp": row.rskp, "overrides": list(row.overrides), "paper": row.paper,
                         **summarize(per_seed), "per_seed": per_seed})
        first = next((cfg for t, _, cfg in plan.rows if t == table), None)
        base = first if first is not None else next(iter(plan.configs.values()), None)
        results.append({
            "head": head,
            "data": base.data.source if base is not None else "",
            "ablation": table,
            "seeds": list(seeds),
            "tiou": list(base.train.tiou) if base is not None else [],
            "rows": rows,
            "skipped": [{"variant": row.name, "reason": reason} for t, row, reason in plan.skipped if t == table],
            "selection": base.train.selection if base is not None else "",
            "epochs": base.train.epochs if base is not None else 0,
            "diagnosis": [],
            "config": config_to_dict(attrs.evolve(base, head=attrs.evolve(base.head, name=head)))
            if base is not None else {},
        })
    return results
