"""``rskp bench`` (alias ``rskp-bench``): the paper's Table 6 for one head or all of them (head alone vs head
wrapped by RSKP).

For every seed, the head alone (``HeadOnlyModel``) and the head inside ``RSKPWrapper`` are trained on the same videos
with the same seed (so the head starts from the same weights) and the same recipe; the table shows detection
mAP at IoU 0.1 ... 0.7 and their average, mean +- sample standard deviation over seeds, and the gain of RSKP
(computed per seed, then averaged). Which evaluation a row reports is the recipe's ``train.selection``: by
default the best test mAP over the periodic evaluations, as the paper and the official code do; ``--selection
heldout`` selects on a held-out part of the training split instead (honest), ``last`` reports the final epoch.

Recipes: ``quick`` (the default; packaged ``configs/quick.yaml``: synthetic features of width 128, 30 epochs,
minutes per head on a laptop CPU) and ``paper`` (the official recipe of design.md: 200 epochs, memory after epoch
100, full 2048-d features), or a YAML file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import attrs
import numpy as np

from .errors import ConfigError
from .sources import data_source_names

# RSKP Table 6 (heads.md section 7): IoU 0.3 / 0.5 / 0.7 / AVG(0.1:0.7), THUMOS14, head alone -> with RSKP.
PAPER_TABLE6: dict[str, dict[str, dict[str, float]]] = {
    "stpn": {"head": {"0.3": 38.4, "0.5": 19.1, "0.7": 4.7, "AVG": 28.9},
             "head+rskp": {"0.3": 46.5, "0.5": 21.8, "0.7": 5.8, "AVG": 33.7}},
    "bm": {"head": {"0.3": 45.2, "0.5": 26.2, "0.7": 8.7, "AVG": 35.3},
           "head+rskp": {"0.3": 47.4, "0.5": 29.3, "0.7": 9.2, "AVG": 37.7}},
    "wum": {"head": {"0.3": 51.0, "0.5": 32.8, "0.7": 10.9, "AVG": 40.4},
            "head+rskp": {"0.3": 53.5, "0.5": 34.0, "0.7": 12.7, "AVG": 42.4}},
    "facnet": {"head": {"0.3": 53.2, "0.5": 34.4, "0.7": 13.7, "AVG": 42.9},
               "head+rskp": {"0.3": 55.8, "0.5": 38.4, "0.7": 13.3, "AVG": 45.2}},
}
VARIANTS = ("head", "head+rskp")


class VersionAction(argparse.Action):
    """``--version``: the package and torch versions (torch is imported only when asked)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the versions of rskp-plugin and torch and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        import torch

        import rskp_plugin

        sys.stdout.write(f"{parser.prog} (rskp-plugin) {rskp_plugin.__version__}, torch {torch.__version__}\n")
        parser.exit()


DESCRIPTION = (
    "Reproduce RSKP's Table 6: train a head alone and the same head wrapped by RSKP on the same data with "
    "the same seeds, and print detection mAP at IoU 0.1..0.7, AVG(0.1:0.7) and the gain, mean +- std over "
    "seeds. Without --data it runs the quick synthetic recipe (no download)."
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``rskp-bench``, the alias of ``rskp bench`` (``rskp_plugin.cli.bench_main`` runs it)."""
    parser = argparse.ArgumentParser(prog="rskp-bench", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rskp bench`` / ``rskp-bench``, and ``run`` as the parser's ``handler``."""
    parser.add_argument("--head", default="facnet",
                        help="registered head name (see 'rskp heads'), or 'all' for every installed head "
                             "(default: facnet)")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds; seed i is --seed-start + i (default: 3)")
    parser.add_argument("--seed-start", type=int, default=0,
                        help="the first seed (seeds are consecutive from here; default: 0)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: the recipe's); the memory warm-up scales with it")
    parser.add_argument("--recipe", default="quick",
                        help="'quick' (synthetic, small width, minutes per head on CPU), 'paper' (the official "
                             "recipe: 200 epochs, memory after epoch 100) or a YAML experiment file (default: quick)")
    parser.add_argument("--data", choices=data_source_names(), default=None,
                        help="data source (default: the recipe's, synthetic for quick/paper)")
    parser.add_argument("--data-root", default=None, help="data folder for --data wtalc/folders")
    parser.add_argument("--dataset-name", default=None,
                        help="W-TALC dataset prefix, e.g. Thumos14reduced (files <NAME>-I3D-JOINTFeatures.npy)")
    parser.add_argument("--selection", choices=("test", "heldout", "last"), default=None,
                        help="which evaluation a row reports: best on test (the paper's practice), best on a "
                             "held-out part of the training split (honest), or the last epoch (default: recipe's)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the recipe's, auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch; 0 = auto: OMP_NUM_THREADS if set, else 1 (default: the recipe's "
                             "train.threads, auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any experiment config key, e.g. --set optimizer.lr=1e-4 (repeatable)")
    parser.add_argument("--output", default=None,
                        help="write the results as JSON to this file: one object per head (a list for --head all); "
                             "default: a new run folder runs/bench-<head>-<data>-<date>-<time>/results.json (never "
                             "an existing one)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="RESULTS.json",
                        help="train nothing: combine --output files of runs with different seeds (same recipe) into "
                             "one table per head, e.g. seeds run in separate processes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    # SUPPRESS: under `rskp bench`, an absent --debug must not hide `rskp --debug bench`
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks on errors")
    parser.add_argument("--version", action=VersionAction)
    parser.set_defaults(handler=run)


def recipe_overrides(args: argparse.Namespace, recipe_epochs: int, recipe_warmup: int) -> list[str]:
    """Config overrides from the command-line options (applied before ``--set``)."""
    out: list[str] = []
    if args.epochs is not None:
        if args.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
        # Keep the warm-up share of the recipe: official 101 of 200 epochs (memory filled after epoch index 100).
        warmup = max(0, round(args.epochs * (recipe_warmup + 1) / recipe_epochs) - 1)
        out += [f"train.epochs={args.epochs}", f"rskp.memory.warmup_epochs={warmup}"]
    if args.data is not None:
        out.append(f"data.source={args.data}")
    if args.data_root is not None:
        out.append(f"data.root={args.data_root}")
    if args.dataset_name is not None:
        out.append(f"data.dataset_name={args.dataset_name}")
    if args.selection is not None:
        out.append(f"train.selection={args.selection}")
    if args.device is not None:
        out.append(f"train.device={args.device}")
    if args.threads is not None:
        out.append(f"train.threads={args.threads}")
    return out


def load_recipe(args: argparse.Namespace):
    """The experiment config of the recipe with the command-line options applied (head name and seed unset)."""
    from .config import apply_overrides
    from .engine import load_experiment

    base = load_experiment(args.recipe)
    config = apply_overrides(
        base, recipe_overrides(args, base.train.epochs, base.rskp.memory.warmup_epochs) + list(args.overrides)
    )
    return attrs.evolve(config, train=attrs.evolve(config.train, output_dir=""))  # benchmark runs write no files


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std (ddof=1; 0 for one seed) over seeds of per-threshold mAP and AVG (percent)."""
    maps = np.array([r["map_percent"] for r in per_seed], dtype=np.float64)  # (seeds, thresholds)
    avgs = np.array([r["avg_map_percent"] for r in per_seed], dtype=np.float64)
    ddof = 1 if len(per_seed) > 1 else 0
    return {
        "map_percent_mean": maps.mean(axis=0).tolist(),
        "map_percent_std": maps.std(axis=0, ddof=ddof).tolist(),
        "avg_map_percent_mean": float(avgs.mean()),
        "avg_map_percent_std": float(avgs.std(ddof=ddof)),
    }


def _gains(result: dict[str, Any]) -> None:
    """Set the gain of RSKP (percentage points of AVG mAP, per seed, then mean and sample std) on the RSKP row."""
    head_runs, rskp_runs = result["rows"][0]["per_seed"], result["rows"][1]["per_seed"]
    gains = np.array([b["avg_map_percent"] - a["avg_map_percent"] for a, b in zip(head_runs, rskp_runs)])
    result["rows"][1]["gain_percent_mean"] = float(gains.mean())
    result["rows"][1]["gain_percent_std"] = float(gains.std(ddof=1 if len(gains) > 1 else 0))


# Keys of result files written before the keys named their unit (the values were percent already).
_LEGACY_RUN_KEYS = {"map": "map_percent", "average": "avg_map_percent", "cmap": "cmap_percent",
                    "final_average": "final_avg_map_percent"}
_LEGACY_ROW_KEYS = ("map_mean", "map_std", "average_mean", "average_std", "gain_mean", "gain_std")


def upgrade_result(result: dict[str, Any]) -> dict[str, Any]:
    """A result object of an older ``--output`` file with today's keys (per-seed runs renamed, summaries dropped:
    ``merge_results`` recomputes them)."""
    for row in result.get("rows", []):
        row["per_seed"] = [{_LEGACY_RUN_KEYS.get(k, k): v for k, v in run.items()} for run in row.get("per_seed", [])]
        for key in _LEGACY_ROW_KEYS:
            row.pop(key, None)
    return result


def run_head(
    head: str, config: Any, datasets: Any, seeds: Sequence[int], progress: Any = None, log: Any = None
) -> dict[str, Any]:
    """Train both variants for every seed; return the result object of the ``--output`` schema.

    Args:
        head: registered head name.
        config: the recipe (head name, seed and ``rskp_enabled`` are set per run).
        datasets: shared by every run.
        seeds: training seeds.
        progress: a running rich ``Progress`` whose first task counts runs, or None.
        log: rich console for one line per finished run, or None.
    """
    from .engine import Trainer, config_to_dict
    from .engine.diagnostics import metrics_line

    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    configs: dict[str, Any] = {}
    for seed in seeds:
        for variant in VARIANTS:
            cfg = attrs.evolve(
                config, head=attrs.evolve(config.head, name=head), train=attrs.evolve(config.train, seed=seed),
                rskp_enabled=variant == "head+rskp",
            )
            configs[variant] = cfg
            started = time.perf_counter()
            trainer = Trainer(cfg, datasets=datasets, progress=progress if progress is not None else False)
            fit = trainer.fit()
            chosen = fit.best["test"]
            runs[variant].append({
                "seed": seed, "map_percent": chosen["map_percent"], "avg_map_percent": chosen["avg_map_percent"],
                "cmap_percent": chosen["cmap_percent"], "epoch": fit.best["epoch"],
                "final_avg_map_percent": fit.final["test"]["avg_map_percent"],
                "per_class_ap_percent": chosen["per_class_ap_percent"],
                "seconds": time.perf_counter() - started,
                "epoch_seconds": float(np.mean(fit.epoch_times)) if fit.epoch_times else None,
                # per evaluation epoch (README "Diagnostics")
                "diagnostics": [metrics_line(r, t) for r, t in zip(fit.history, fit.eval_times)],
            })
            summary = (f"{head} {variant} seed {seed}: AVG mAP {chosen['avg_map_percent']:.2f} % (epoch "
                       f"{fit.best['epoch']}, selected on {fit.selection})")
            if log is not None:
                log.log(f"{summary}, last epoch {fit.final['test']['avg_map_percent']:.2f} %, "
                        f"{runs[variant][-1]['seconds']:.0f} s")
            if progress is not None:
                progress.update(progress.task_ids[0], advance=1, description=f"benchmark runs (last: {summary})")
    rows = []
    for variant in VARIANTS:
        rows.append({"variant": variant, **summarize(runs[variant]), "per_seed": runs[variant]})
    tiou = list(config.train.tiou)
    result = {
        "head": head,
        "data": config.data.source,
        "seeds": list(seeds),
        "tiou": tiou,
        "rows": rows,
        "selection": config.train.selection,
        "epochs": config.train.epochs,
        "diagnosis": diagnose(rows),
        "config": config_to_dict(configs["head+rskp"]),
    }
    _gains(result)
    return result


def diagnose(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For every seed on which RSKP's AVG is below the head's, what the diagnostics say (``explain_gap``)."""
    from .engine.diagnostics import explain_gap

    found = (explain_gap(a, b) for a, b in zip(rows[0]["per_seed"], rows[1]["per_seed"]))
    return [d for d in found if d is not None]


def _is_thumos(config: Any) -> bool:
    return config.data.source != "synthetic" and "thumos" in config.data.dataset_name.lower()


def results_table(result: dict[str, Any], *, paper: bool = False):
    """A rich table: head, head+RSKP and the gain (mean +- std), plus the paper's Table 6 rows if asked."""
    from rich.table import Table

    tiou = result["tiou"]
    title = (f"Table 6, {result['head']}: {result['data']} data, {len(result['seeds'])} seed(s), "
             f"{result['epochs']} epochs, selected on {result['selection']}")
    table = Table(title=title, caption="mAP (%), mean over seeds with the sample std below; gain per seed")
    table.add_column("variant")
    for t in tiou:
        table.add_column(f"{t:g}", justify="right")
    table.add_column("AVG", justify="right")
    rows = {r["variant"]: r for r in result["rows"]}
    for variant in VARIANTS:
        r = rows[variant]
        cells = [f"{m:.1f}\n[dim]±{s:.1f}[/]" for m, s in zip(r["map_percent_mean"], r["map_percent_std"])]
        table.add_row(variant, *cells,
                      f"[bold]{r['avg_map_percent_mean']:.2f}[/]\n[dim]±{r['avg_map_percent_std']:.2f}[/]")
    gain = [b - a for a, b in zip(rows["head"]["map_percent_mean"], rows["head+rskp"]["map_percent_mean"])]
    g, gs = rows["head+rskp"]["gain_percent_mean"], rows["head+rskp"]["gain_percent_std"]
    color = "green" if g > 0 else "red"
    table.add_row("gain", *[f"{x:+.1f}" for x in gain], f"[bold {color}]{g:+.2f}[/]\n[dim]±{gs:.2f}[/]")
    reported = PAPER_TABLE6.get(result["head"])
    if paper and reported:
        for variant in VARIANTS:
            cells = [f"{reported[variant][f'{t:g}']:.1f}" if f"{t:g}" in reported[variant] else "–" for t in tiou]
            table.add_row(f"paper: {variant}", *cells, f"{reported[variant]['AVG']:.1f}", style="dim")
    return table


def run(args: argparse.Namespace) -> int:
    """Run ``rskp bench`` with parsed options; returns the exit status (errors are raised as ``RSKPError``)."""
    from rich.console import Console

    from .engine import build_datasets, environment, resolve_device, set_threads
    from .engine.trainer import progress_bar
    from .plugins import available_heads, create_head

    console = Console()
    if args.merge:
        results = merge_results(args.merge)
        for result in results:
            console.print(results_table(result, paper=result["data"] != "synthetic"))
            _print_diagnosis(result, console)
        if args.output:
            _write(Path(args.output), results, single=len(results) == 1, console=console)
        return 0
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    config = load_recipe(args)
    set_threads(config.train.threads)  # before the data is built; every Trainer sets the same again
    installed = available_heads()
    heads = installed if args.head == "all" else [args.head]
    if args.head != "all" and args.head not in installed:
        create_head(args.head)  # raises UnknownHeadError with a suggestion and the installed names
    datasets = build_datasets(config)
    seeds = [args.seed_start + i for i in range(args.seeds)]
    results = []
    err = Console(stderr=True)
    progress = None if args.no_progress else progress_bar(err)
    with progress if progress is not None else contextlib.nullcontext():
        if progress is not None:
            progress.add_task("benchmark runs", total=len(heads) * len(seeds) * 2)
        for head in heads:
            result = run_head(head, config, datasets, seeds, progress, log=err)
            result["environment"] = environment(resolve_device(config.train.device))
            results.append(result)
            console.print(results_table(result, paper=_is_thumos(config)))
            _print_diagnosis(result, console)
    path = Path(args.output) if args.output else new_run_folder(Path("runs"), args.head, config.data.source)
    _write(path, results, single=args.head != "all", console=console)
    return 0


def _print_diagnosis(result: dict[str, Any], console: Any) -> None:
    for d in result.get("diagnosis", []):
        console.print(f"[yellow]{result['head']}:[/] {d['message']}", highlight=False)


def new_run_folder(parent: Path, head: str, data: str) -> Path:
    """``parent/bench-<head>-<data>-<YYYYmmdd-HHMMSS>[-k]/results.json``: a folder created now, so no other run
    (another process included) can own it; returns the path of the results file inside it."""
    stem = f"bench-{head}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"
    parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        folder = parent / (stem if k == 1 else f"{stem}-{k}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder / "results.json"
    raise ConfigError(f"no free run folder named {stem}-<k> in {os.fspath(parent)}; pass --output FILE")


def _write(path: Path, results: list[dict[str, Any]], *, single: bool, console: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results[0] if single else results, indent=2))
    console.print(f"results written to {os.fspath(path)}", highlight=False)


def merge_results(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Combine result files (objects or lists of objects) per head: per-seed runs are pooled, statistics redone.

    Raises:
        ConfigError: a file is unreadable, or two files disagree on the data, thresholds, epochs or selection, or
            repeat a seed.
    """
    by_head: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read benchmark results {path!r}: {exc}") from exc
        for result in data if isinstance(data, list) else [data]:
            result = upgrade_result(result)
            head = result["head"]
            if head not in by_head:
                by_head[head] = json.loads(json.dumps(result))
                continue
            merged = by_head[head]
            for key in ("data", "tiou", "epochs", "selection"):
                if merged[key] != result[key]:
                    raise ConfigError(f"{path}: {head} has {key}={result[key]!r}, another file {merged[key]!r}")
            if set(merged["seeds"]) & set(result["seeds"]):
                raise ConfigError(f"{path}: seeds {sorted(set(merged['seeds']) & set(result['seeds']))} of {head} "
                                  "appear twice")
            merged["seeds"] += result["seeds"]
            for row, new in zip(merged["rows"], result["rows"]):
                row["per_seed"] += new["per_seed"]
    out = []
    for result in by_head.values():
        for row in result["rows"]:
            row.update(summarize(row["per_seed"]))
        _gains(result)
        result["diagnosis"] = diagnose(result["rows"])
        out.append(result)
    return out
