"""``rskp calibrate``: derive a head's RSKP recipe on held-out training videos (``rskp_plugin.calibrate``)."""

from __future__ import annotations

import argparse
import shlex
import sys

from . import config_notes, console, err_console, markup
from ..sources import data_source_names


def add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="derive a head's RSKP recipe on held-out training videos (never the test split)",
        description=(
            "Train the head alone and a small grid of RSKP settings (paired: same seeds, same videos) on the "
            "training split minus a held-out part, score each run by its best AVG mAP on the held-out videos, and "
            "write the chosen settings as a recipe file with the evidence. The test split is never read. 'rskp "
            "train --head-recipe FILE' and 'rskp bench --head-recipe FILE' use the recipe. With --combine, "
            "choose one recipe over calibrations on several data sets instead of training. Quick grid on the "
            "speech set: about 5 minutes per head with --jobs 2 on a 2-core machine (README, 'Calibrating a head')."
        ),
    )
    p.add_argument("--head", default=None, help="registered head name (see 'rskp heads'); required unless --combine")
    p.add_argument("--config", default="quick",
                   help="YAML experiment file or packaged config giving the training recipe (default: quick)")
    p.add_argument("--data", choices=data_source_names(), default=None, help="sets data.source")
    p.add_argument("--data-root", default=None, help="data folder for wtalc/folders; sets data.root")
    p.add_argument("--dataset-name", default=None, help="W-TALC file prefix; sets data.dataset_name")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs of every run (default: the config's); the memory warm-up scales with it")
    p.add_argument("--seeds", type=int, default=2, help="seeds per candidate (default: 2)")
    p.add_argument("--seed-start", type=int, default=0, help="the first seed (default: 0)")
    p.add_argument("--grid", choices=("quick", "full"), default="quick",
                   help="quick: defaults, own copies of attention-like parameters, no distillation, the other "
                        "distillation temperature (0.2 or 1); full adds no ramp-up, no memory bank, no head "
                        "gradient and the foreground walk (for instances covering much of a video). Both add the "
                        "head alone and the best single change together with each other one (default: quick)")
    p.add_argument("--heldout-fraction", type=float, default=0.25,
                   help="share of the training videos held out to score the runs (default: 0.25)")
    p.add_argument("--min-gain", type=float, default=0.5,
                   help="a candidate replaces the defaults only if its mean held-out AVG is at least this many "
                        "points higher (default: 0.5)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once, each a process with one torch thread (default: 1; 2 on 2 cores)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every run, e.g. --set rskp.losses.attention_normalization=0 "
                        "(rskp values set here become part of the recipe)")
    p.add_argument("--output", default=None,
                   help="recipe file to write (default: recipe-<head>-<data>.yaml; an existing file is refused)")
    p.add_argument("--combine", nargs="+", default=None, metavar="RECIPE.yaml",
                   help="train nothing: choose one recipe over these calibrations of one head (e.g. one per data "
                        "set) by the mean paired difference to the head alone, and write it to --output")
    p.add_argument("--reuse", default=None, metavar="RECIPE.yaml",
                   help="an earlier calibration of the same head, data, epochs and seeds: its runs of candidates with "
                        "the same settings are taken from it instead of trained again")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=_run_calibrate)


def _values(args: argparse.Namespace) -> dict[str, object]:
    pairs = [("head.name", args.head), ("data.source", args.data), ("data.root", args.data_root),
             ("data.dataset_name", args.dataset_name)]
    values: dict[str, object] = {key: value for key, value in pairs if value is not None}
    values["head.recipe"] = "none"  # the grid starts from the defaults: a recipe is derived, not inherited
    return values


def _command() -> str:
    return "rskp " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else "rskp calibrate"


def _run_calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import calibrate as cal
    from ..errors import ConfigError
    from ..recipes import Recipe, read_recipe, recipe_yaml

    if args.combine:
        return _run_combine(args)
    if not args.head:
        raise ConfigError("rskp calibrate needs --head NAME (or --combine FILES)")
    if args.seeds < 1 or args.jobs < 1:
        raise ConfigError("--seeds and --jobs must be at least 1")
    if not 0 < args.heldout_fraction < 1:
        raise ConfigError(f"--heldout-fraction must be in (0, 1), got {args.heldout_fraction}")
    config = _config(args)
    output = Path(args.output or f"recipe-{args.head}-{_data_name(config)}.yaml")
    if output.exists():
        raise ConfigError(f"{output} exists; pass another --output (a recipe file is never overwritten)")
    base = _user_rskp(args)
    train, held = cal.calibration_data(config, args.heldout_fraction)  # the training split alone
    own = _own_copies(config, train)
    single = cal.candidate_grid(args.grid, own)
    seeds = [args.seed_start + i for i in range(args.seeds)]
    err_console.print(
        f"calibrating {markup(args.head)} on {markup(_data_name(config))}: {len(single)} RSKP candidates and the "
        f"head alone x {len(seeds)} seed(s), {config.train.epochs} epochs each, trained on {len(train.videos)} and "
        f"scored on {len(held.videos)} held-out training videos (the test split is not read)", highlight=False)
    if own:
        err_console.print(f"attention-like parameters of {markup(args.head)} (neither embed nor classify uses "
                          f"them): {', '.join(own)}", highlight=False)
    earlier = {} if args.reuse is None else cal.reusable(read_recipe(args.reuse), seeds, config.train.epochs,
                                                           _data_name(config))
    results = _train(args, config, {cal.ALONE: None, **single}, seeds, earlier)
    rows = cal.summarize([cal.ALONE, *single], single, seeds, results)
    gains = {r["name"]: r["mean"] - next(x["mean"] for x in rows if x["name"] == "defaults") for r in rows}
    second = cal.second_round(single, gains)
    overrides = {**single, **second}
    if second:
        results.update(_train(args, config, second, seeds, earlier))
        rows = cal.summarize([cal.ALONE, *overrides], overrides, seeds, results)
    chosen = cal.choose(rows, args.min_gain)
    defaults = cal.grid_defaults()
    values = cal.recipe_values(base, overrides[chosen], defaults)
    evidence = {
        "data": _data_name(config), "config": args.config, "epochs": config.train.epochs, "seeds": seeds,
        "heldout_fraction": args.heldout_fraction, "training_videos": len(train.videos),
        "heldout_videos": len(held.videos),
        "score": "best AVG mAP on the held-out training videos over the evaluations (every "
                 f"{config.train.eval_interval} epochs); the test split was not read",
        "rule": f"best mean paired difference to the head alone; the defaults unless the best beats them by "
                f">= {args.min_gain}",
        "base": base, "defaults": defaults, "chosen": chosen, "candidates": rows,
        "seconds": round(sum(r["seconds"] for r in results.values()), 1),
    }
    recipe = Recipe(values=values, head=args.head, evidence=evidence)
    output.write_text(recipe_yaml(recipe, cal.evidence_header(_command())), encoding="utf-8")
    read_recipe(output)  # what was written reads back
    console.print(_table(rows, chosen, f"rskp calibrate {args.head}: held-out AVG mAP (%), {_data_name(config)}"))
    console.print(f"recipe ({chosen}): {values or '{} (the defaults)'} -> {markup(output)}", highlight=False)
    return 0


def _run_combine(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import calibrate as cal
    from ..errors import ConfigError
    from ..recipes import Recipe, read_recipe, recipe_yaml

    recipes = [read_recipe(path) for path in args.combine]
    chosen, overrides, rows = cal.combine(recipes, args.min_gain)
    bases = [r.evidence.get("base", {}) for r in recipes]
    if any(b != bases[0] for b in bases):
        raise ConfigError("the calibrations were run with different --set rskp values (evidence.base); combine "
                          "calibrations of the same base")
    if not args.output:
        raise ConfigError("--combine needs --output FILE")
    output = Path(args.output)
    if output.exists():
        raise ConfigError(f"{output} exists; pass another --output (a recipe file is never overwritten)")
    values = cal.recipe_values(bases[0], overrides, cal.calibrated_defaults(recipes[0]))
    kept = ("data", "config", "epochs", "seeds", "heldout_fraction", "training_videos", "heldout_videos", "chosen",
            "candidates")
    evidence = {"combined": [{"file": Path(p).name, **{k: r.evidence.get(k) for k in kept}}
                             for p, r in zip(args.combine, recipes)],
                "rule": f"best mean over the sets of the mean paired difference to the head alone; the defaults "
                        f"unless the best beats them by >= {args.min_gain}",
                "base": bases[0], "defaults": cal.calibrated_defaults(recipes[0]), "chosen": chosen,
                "candidates": rows}
    recipe = Recipe(values=values, head=recipes[0].head, evidence=evidence)
    output.write_text(recipe_yaml(recipe, cal.evidence_header(_command())), encoding="utf-8")
    read_recipe(output)
    from rich.table import Table

    table = Table(title=f"rskp calibrate --combine {recipes[0].head}: paired difference to the head alone (held-out "
                        "AVG, mean over seeds)")
    table.add_column("candidate")
    for r in recipes:
        table.add_column(str(r.evidence.get("data", "?")), justify="right")
    table.add_column("mean", justify="right")
    for row in rows:
        mark = " (chosen)" if row["name"] == chosen else ""
        table.add_row(row["name"] + mark, *[cal.fmt(d) for d in row["diff_per_set"]], cal.fmt(row["diff_mean"]))
    console.print(table)
    console.print(f"recipe ({chosen}): {values or '{} (the defaults)'} -> {markup(output)}", highlight=False)
    return 0


def _config(args: argparse.Namespace):  # noqa: ANN202 - ExperimentConfig
    from ..bench import scaled_warmup
    from ..engine import load_experiment

    values = _values(args)

    def load():  # noqa: ANN202 - both loads under one note per left-out head option
        base = load_experiment(args.config, list(args.overrides), values=values)
        extra = []
        if args.epochs is not None:
            warmup = scaled_warmup(args.epochs, base.train.epochs, base.rskp.memory.warmup_epochs)
            extra = [f"train.epochs={args.epochs}", f"rskp.memory.warmup_epochs={warmup}"]
        return load_experiment(args.config, extra + list(args.overrides), values=values)

    return config_notes(load)


def _user_rskp(args: argparse.Namespace) -> dict[str, object]:
    """The ``rskp`` values the user set with ``--set rskp.…`` (they go into the recipe)."""
    import yaml

    out: dict[str, object] = {}
    for item in args.overrides:
        key, _, raw = item.partition("=")
        if key.strip().startswith("rskp.") and not key.strip().startswith("rskp.memory.warmup_epochs"):
            out[key.strip()[len("rskp."):]] = yaml.safe_load(raw)
    return out


def _own_copies(config, train) -> tuple[str, ...]:  # noqa: ANN001
    import numpy as np

    from ..calibrate import attention_like_parameters
    from ..plugins import create_head

    feature_dim = int(np.shape(train.videos[0].features)[1])
    head = create_head(config.head.name, num_classes=len(train.class_names), feature_dim=feature_dim,
                       **dict(config.head.options))
    return attention_like_parameters(head, feature_dim)


def _train(args: argparse.Namespace, config, candidates: dict, seeds: list[int],  # noqa: ANN001
           earlier: dict) -> dict:
    """Train every (candidate, seed) not in ``earlier`` (an earlier calibration's results with the same overrides)."""
    import attrs

    from .. import calibrate as cal
    from ..engine import config_to_dict
    from ..engine.progress import progress_bar
    from ..recipes import apply

    jobs = []
    reused = {}
    for seed in seeds:
        for name, overrides in candidates.items():
            old = earlier.get((name, seed))
            if old is not None and old["overrides"] == (overrides or {}):
                reused[(name, seed)] = old
                continue
            run = attrs.evolve(config, train=attrs.evolve(config.train, seed=seed))
            if overrides is None:
                run = attrs.evolve(run, rskp_enabled=False)
            else:
                run = attrs.evolve(run, rskp=apply(overrides, run.rskp))
            jobs.append((name, seed, config_to_dict(run)))
    plain = args.no_progress or not err_console.is_terminal
    progress = None if plain else progress_bar(err_console)

    def report(name: str, seed: int, result: dict) -> None:
        line = (f"{name} seed {seed}: held-out AVG {result['heldout_avg']:.2f} % (epoch {result['epoch']}), "
                f"{result['seconds']:.0f} s")
        if progress is None:
            err_console.print(line, highlight=False, soft_wrap=True)
        else:
            progress.console.log(line)
            progress.advance(task)

    if reused:
        err_console.print(f"reusing {len(reused)} run(s) of {markup(args.reuse)}", highlight=False)
    if progress is None:
        return {**reused, **cal.run_all(jobs, args.heldout_fraction, args.jobs, report)}
    with progress:
        task = progress.add_task("calibration runs", total=len(jobs))
        return {**reused, **cal.run_all(jobs, args.heldout_fraction, args.jobs, report)}


def _data_name(config) -> str:  # noqa: ANN001
    return "synthetic" if config.data.source == "synthetic" else config.data.dataset_name


def _table(rows, chosen: str, title: str):  # noqa: ANN001, ANN202
    from rich.table import Table

    from ..calibrate import fmt

    table = Table(title=title, caption="paired difference: candidate - head alone, same seed")
    for column in ("candidate", "held-out AVG per seed", "mean", "std", "paired diff", "diff std"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for r in rows:
        mark = " (chosen)" if r["name"] == chosen else ""
        table.add_row(r["name"] + mark, ", ".join(f"{a:.2f}" for a in r["heldout_avg"]), f"{r['mean']:.2f}",
                      f"{r['std']:.2f}", "" if r["name"] == "head alone" else fmt(r["diff_mean"]),
                      "" if r["name"] == "head alone" else f"{r['diff_std']:.2f}")
    return table
