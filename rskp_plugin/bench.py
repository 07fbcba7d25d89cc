"""``rskp bench`` (alias ``rskp-bench``): the paper's Table 6 for one head or all of them (head alone vs head
wrapped by RSKP).

For every seed, the head alone (``HeadOnlyModel``) and the head inside ``RSKPWrapper`` are trained on the same videos
with the same seed (so the head starts from the same weights) and the same recipe; the table shows detection
mAP at IoU 0.1 ... 0.7 and their average, mean +- sample standard deviation over seeds, and the gain of RSKP
(computed per seed, then averaged). Which evaluation a row reports is the recipe's ``train.selection``: by
default the best epoch on a held-out part of the training split (honest); ``--selection test`` picks the best
test mAP over the periodic evaluations, as the paper and the official code do (optimistic), ``last`` the final
epoch. The table's title and the JSON name the selection.

Recipes: ``quick`` (the default; packaged ``configs/quick.yaml``: synthetic features of width 128, 30 epochs,
minutes per head on a laptop CPU) and ``paper`` (the official recipe, docs/design.md 6: 200 epochs, memory after epoch
100, full 2048-d features), or a YAML file.

``--ablation table3|table4|table5|fig5|supp|all`` trains the rows of the paper's ablation tables instead
(``rskp_plugin.ablations``): each row is a config change of the same recipe, with the same seeds and data; rows whose
configs come out equal are trained once per seed and shared between tables.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import attrs

from .ablations import ABLATION_NAMES, ABLATIONS, selected_tables
from .bench_results import (
    ablation_table,
    merge_results,
    new_run_folder,
    print_diagnosis,
    results_table,
    write_results,
)
from .bench_runs import AblationPlan, plan_ablation, run_ablation, run_head
from .errors import ConfigError
from .sources import data_source_names


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
    "seeds. Without --data it runs the quick synthetic recipe (no download). With --ablation it runs the rows of "
    "the paper's ablation tables (Tables 3-5, Fig. 5, supplement Tables 2-3) instead, each a config change of the "
    "same recipe."
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
                             "recipe: 200 epochs, memory after epoch 100), another packaged config (thumos14, "
                             "activitynet13) or a YAML experiment file (default: quick)")
    parser.add_argument("--head-recipe", default=None, metavar="builtin|none|FILE",
                        help="the heads' RSKP settings: 'builtin' (each head's registered recipe), 'none' (the "
                             "defaults: what a head that declares nothing gets) or a recipe file written by 'rskp "
                             "calibrate' (default: the config's head.recipe, builtin)")
    parser.add_argument("--data", choices=data_source_names(), default=None,
                        help="data source (default: the recipe's, synthetic for quick/paper)")
    parser.add_argument("--data-root", default=None, help="data folder for --data wtalc/folders")
    parser.add_argument("--dataset-name", default=None,
                        help="W-TALC dataset prefix, e.g. Thumos14reduced (files <NAME>-I3D-JOINTFeatures.npy)")
    parser.add_argument("--selection", choices=("test", "heldout", "last"), default=None,
                        help="which evaluation a row reports: best on a held-out part of the training split "
                             "(honest), best on test (the paper's practice: optimistic) or the last epoch (default: "
                             "the recipe's train.selection, heldout)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the recipe's, auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch; 0 = auto: OMP_NUM_THREADS if set, else 1 (default: the recipe's "
                             "train.threads, auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any experiment config key, e.g. --set optimizer.lr=1e-4 (repeatable)")
    parser.add_argument("--output", default=None,
                        help="write the results as JSON to this file: one object per head and table (a list for --head all "
                             "or --ablation all); "
                             "default: a new run folder runs/bench-<head>-<data>-<date>-<time>/results.json (never "
                             "an existing one)")
    rows = "; ".join(f"{t}: {', '.join(r.name for r in table)}" for t, table in ABLATIONS.items())
    parser.add_argument("--ablation", choices=(*ABLATION_NAMES, "all"), default=None,
                        help="run the rows of a paper ablation table instead of Table 6, with the same recipe, seeds "
                             "and data; paper numbers beside ours on THUMOS14. 'all' runs every table, training rows "
                             f"with equal configs once per seed. Rows: {rows} (README, 'Ablations')")
    parser.add_argument("--merge", nargs="+", default=None, metavar="RESULTS.json",
                        help="train nothing: combine --output files of runs with different seeds (same recipe) into "
                             "one table per head, e.g. seeds run in separate processes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    # SUPPRESS: under `rskp bench`, an absent --debug must not hide `rskp --debug bench`
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks on errors")
    parser.add_argument("--version", action=VersionAction)
    parser.set_defaults(handler=run)


def scaled_warmup(epochs: int, recipe_epochs: int, recipe_warmup: int) -> int:
    """The memory warm-up of a run of ``epochs`` epochs that keeps the recipe's warm-up share (official: the bank
    is filled after epoch index 100 of 200, i.e. 101 of 200 epochs warm up)."""
    if epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}")
    return max(0, round(epochs * (recipe_warmup + 1) / recipe_epochs) - 1)


def recipe_overrides(args: argparse.Namespace, recipe_epochs: int, recipe_warmup: int) -> list[str]:
    """Config overrides from the command-line options (applied before ``--set``)."""
    out: list[str] = []
    if args.epochs is not None:
        warmup = scaled_warmup(args.epochs, recipe_epochs, recipe_warmup)
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


def load_recipe(args: argparse.Namespace, head: str | None = None):
    """The experiment config of the recipe with the command-line options applied, for ``head`` (its RSKP recipe
    laid under the config, ``rskp_plugin.recipes``; None: the config's head), seed unset."""
    from .commands import config_notes
    from .engine import load_experiment

    values = {} if head is None else {"head.name": head}
    if args.head_recipe is not None:
        values["head.recipe"] = args.head_recipe
    def load() -> Any:  # both loads under one note per left-out head option
        base = load_experiment(args.recipe, values=values)
        return load_experiment(
            args.recipe, recipe_overrides(args, base.train.epochs, base.rskp.memory.warmup_epochs)
            + list(args.overrides), values=values)

    config = config_notes(load)
    return attrs.evolve(config, train=attrs.evolve(config.train, output_dir=""))  # benchmark runs write no files


def _is_thumos(config: Any) -> bool:
    return config.data.source != "synthetic" and "thumos" in config.data.dataset_name.lower()


def run(args: argparse.Namespace) -> int:
    """Run ``rskp bench`` with parsed options; returns the exit status (errors are raised as ``RSKPError``)."""
    from rich.console import Console

    from .engine import build_datasets, set_threads
    from .engine.progress import progress_bar
    from .plugins import available_heads, create_head

    console = Console()
    if args.merge:
        results = merge_results(args.merge)
        for result in results:
            show_result(result, console, paper=result["data"] != "synthetic")
        if args.output:
            write_results(Path(args.output), results, single=len(results) == 1, console=console)
        return 0
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    installed = available_heads()
    heads = installed if args.head == "all" else [args.head]
    if args.head != "all" and args.head not in installed:
        create_head(args.head)  # raises UnknownHeadError with a suggestion and the installed names
    configs = {head: load_recipe(args, head) for head in heads}  # each head with its own recipe laid under
    config = configs[heads[0]]
    set_threads(config.train.threads)  # before the data is built; every Trainer sets the same again
    datasets = build_datasets(config)  # the same videos for every head (the data keys do not depend on the head)
    seeds = [args.seed_start + i for i in range(args.seeds)]
    results = []
    err = Console(stderr=True)
    plans: dict[str, AblationPlan] = {}
    if args.ablation:
        for head in heads:  # every row of every head validated before any training
            plans[head] = plan_ablation(configs[head], selected_tables(args.ablation))
        plan = plans[heads[0]]
        for table, row, reason in plan.skipped:
            err.print(f"[yellow]skipped[/] {table} row \"{row.name}\": {reason}", highlight=False)
        if not plan.configs:
            raise ConfigError(f"--ablation {args.ablation}: no row can run here (all were skipped, see above)")
    runs = sum(len(plans[h].configs) if plans else 2 for h in heads)
    name = args.head if not args.ablation else f"{args.head}-{args.ablation}"
    path = Path(args.output) if args.output else new_run_folder(Path("runs"), name, config.data.source)
    single = args.head != "all"

    def save(partial: list[dict[str, Any]]) -> None:  # after every finished pair: an interrupt keeps them
        write_results(path, partial, single=single and len(partial) == 1, console=None)

    progress = None if args.no_progress else progress_bar(err)
    try:
        with progress if progress is not None else contextlib.nullcontext():
            if progress is not None:
                progress.add_task("benchmark runs", total=runs * len(seeds))
            for head in heads:
                if plans:
                    found = run_ablation(head, plans[head], datasets, seeds, progress, log=err)
                else:
                    found = [run_head(head, configs[head], datasets, seeds, progress, log=err,
                                      on_pair=lambda r: save(results + [_stamped(r, config)]))]
                for result in found:
                    results.append(_stamped(result, config))
                    show_result(result, console, paper=_is_thumos(config))
                save(results)
    except KeyboardInterrupt:
        if path.exists():
            err.print(f"[yellow]interrupted[/]: the finished pairs are in {path} ('rskp bench --merge' combines it "
                      "with a run of the remaining seeds)", highlight=False)
        raise
    write_results(path, results, single=single and len(results) == 1, console=console)
    return 0


def _stamped(result: dict[str, Any], config: Any) -> dict[str, Any]:
    """``result`` with the machine it ran on."""
    from .engine import environment, resolve_device

    return {**result, "environment": environment(resolve_device(config.train.device))}


def show_result(result: dict[str, Any], console: Any, *, paper: bool) -> None:
    """Print a result object: its table (Table 6 or an ablation), then the diagnosis or the skipped rows."""
    if "ablation" in result:
        console.print(ablation_table(result, paper=paper))
        for skipped in result.get("skipped", []):
            console.print(f"[yellow]{result['ablation']}:[/] row \"{skipped['variant']}\" skipped: "
                          f"{skipped['reason']}", highlight=False)
    else:
        console.print(results_table(result, paper=paper))
        print_diagnosis(result, console)
