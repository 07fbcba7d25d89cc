"""``rskp train`` (train a head with or without RSKP) and ``rskp plot`` (figures of a trained run)."""

from __future__ import annotations

import argparse

from . import config_notes, console, err_console, markup
from ..sources import data_source_names


# ---------------------------------------------------------------------------------------------------- train
def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a head (alone or with RSKP) from a YAML experiment config",
        description=(
            "Train a head with RSKP (official recipe by default: Adam 5e-5, weight decay 5e-4, gradients summed over "
            "10 videos, 200 epochs, memory bank after epoch 100). Writes last.pt, best.pt and results.json to the "
            "output folder, by default runs/<config>-<head> (-norskp added for the head alone; config 'default' "
            "without --config), e.g. runs/quick-wum; a folder holding another run is refused unless --overwrite. "
            "Packaged configs: quick (synthetic, minutes on a CPU), paper, thumos14, activitynet13; a YAML file "
            "may build on one with 'base: quick'. Options left out "
            "keep the config's value. torch uses 1 CPU thread unless --threads or OMP_NUM_THREADS says otherwise (more "
            "threads spin against any other busy process). Writes config.yaml beside the checkpoints: --config "
            "<run folder>/config.yaml trains the same run again. Several processes "
            "(data-parallel; gloo on CPU, nccl on GPU): torchrun --nproc_per_node=N -m rskp_plugin.cli train ..."
        ),
    )
    p.add_argument("--config", default=None,
                   help="YAML experiment file or packaged config name (default: the built-in official recipe); a "
                        "file may start with 'base: quick' (or a path relative to it) and hold only what it changes")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optimizer.lr=1e-4 (repeatable, applied last)")
    p.add_argument("--head", default=None, help="head name (see 'rskp heads'); sets head.name")
    p.add_argument("--head-recipe", default=None, metavar="builtin|none|FILE",
                   help="the head's RSKP settings, laid under the config: 'builtin' (the head's registered recipe: "
                        "'rskp heads --recipe NAME' shows it), 'none' (the defaults) or a recipe file written by "
                        "'rskp calibrate'; sets head.recipe (default: builtin)")
    p.add_argument("--no-rskp", action="store_true", help="train the head alone (rskp_enabled=false)")
    p.add_argument("--data", choices=data_source_names(), default=None,
                   help="sets data.source; wtalc unpickles only the files whose format needs it (the feature file, "
                        "segments.npy, labels.npy, labels_all.npy), by an unpickler that rebuilds arrays and plain "
                        "values only: a pickle naming anything else is refused unrun")
    p.add_argument("--data-root", default=None, help="data folder for wtalc/folders; sets data.root")
    p.add_argument("--dataset-name", default=None, help="W-TALC file prefix; sets data.dataset_name")
    p.add_argument("--epochs", type=int, default=None,
                   help="sets train.epochs; the memory bank's warm-up (rskp.memory.warmup_epochs) scales with it, "
                        "keeping the config's share, unless --set gives it")
    p.add_argument("--seed", type=int, default=None, help="sets train.seed (torch, numpy, python, data order)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N; sets train.device")
    p.add_argument("--amp", choices=("auto", "bf16", "off"), default=None,
                   help="bfloat16 autocast: auto = on CUDA only, bf16 = on any device (CPU too), off; sets train.amp")
    p.add_argument("--selection", choices=("test", "heldout", "last"), default=None,
                   help="model selection: best test mAP (paper), best on a held-out training part, or last epoch")
    p.add_argument("--output-dir", default=None,
                   help="run folder for checkpoints and results (default: runs/<config>-<head>[-norskp]); sets "
                        "train.output_dir")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in the output folder (its last.pt, best.pt, results.json, "
                        "metrics.jsonl, metrics.csv, config.yaml, tensorboard/ and plots/)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch; 0 = auto (OMP_NUM_THREADS if set, else 1); sets train.threads")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue the run saved in this checkpoint (or run folder with last.pt), writing beside it; "
                        "its config is used, with options and --set overrides on top (--config must agree with it)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(handler=_run_train)


def train_values(args: argparse.Namespace) -> dict[str, object]:
    """The config keys set by flags, as typed values (only ``--set`` is parsed as YAML)."""
    pairs = [("head.name", args.head), ("head.recipe", args.head_recipe), ("data.source", args.data),
             ("data.root", args.data_root), ("data.dataset_name", args.dataset_name), ("train.epochs", args.epochs),
             ("train.seed", args.seed),
             ("train.device", args.device), ("train.amp", args.amp), ("train.selection", args.selection),
             ("train.output_dir", args.output_dir), ("train.threads", args.threads)]
    values: dict[str, object] = {key: value for key, value in pairs if value is not None}
    if args.no_rskp:
        values["rskp_enabled"] = False
    return values


def scaled_epochs(config_name: str | None, values: dict[str, object], overrides: list[str]) -> list[str]:
    """``--epochs N`` keeps the config's warm-up share (as ``rskp bench --epochs`` does): the override of
    ``rskp.memory.warmup_epochs`` to add before the user's ``--set`` (none when --epochs is not given or --set
    names the warm-up)."""
    from ..bench import scaled_warmup
    from ..engine import load_experiment

    epochs = values.get("train.epochs")
    if epochs is None or any(o.split("=", 1)[0].strip() == "rskp.memory.warmup_epochs" for o in overrides):
        return []
    base = load_experiment(config_name, overrides, values={k: v for k, v in values.items() if k != "train.epochs"})
    warmup = scaled_warmup(int(epochs), base.train.epochs, base.rskp.memory.warmup_epochs)  # type: ignore[arg-type]
    return [f"rskp.memory.warmup_epochs={warmup}"]


def schedule_notes(config, *, packaged_default: bool = False) -> list[str]:  # noqa: ANN001 - ExperimentConfig
    """What a run will do, printed before it starts: the cost of the official recipe where no config was given,
    which of RSKP's parts are active from which epoch, and a warning where the schedule never fills the memory bank
    or never brings RSKP's terms to full weight."""
    t, r = config.train, config.rskp
    notes = []
    if packaged_default:
        notes.append(f"no --config: the official recipe, {t.epochs} epochs at feature width {config.data.feature_dim}"
                     " (hours on a CPU); --config quick trains in minutes")
    if not config.rskp_enabled:
        return notes + [f"{config.head.name} alone, {t.epochs} epochs, epoch chosen on {t.selection}"]
    ramp = r.memory.warmup_epochs if r.losses.rampup_epochs is None else r.losses.rampup_epochs
    bank = r.memory.warmup_epochs + 1  # epochs done before the bank is filled
    parts = [f"{config.head.name} + RSKP, {t.epochs} epochs, epoch chosen on {t.selection}",
             "intra-video walk from epoch 1",
             f"RSKP's terms ramped up over epochs 1-{ramp}" if ramp > 0 else "RSKP's terms at full weight throughout",
             (f"memory bank and inter-video walk from epoch {bank + 1}" if r.memory.enabled else "no memory bank"),
             f"recipe: {config.head.recipe}"]
    notes.append("; ".join(parts))
    if r.memory.enabled and bank >= t.epochs:
        notes.append(f"[yellow]warning[/]: the memory bank is filled after epoch {bank}, but the run has {t.epochs}: "
                     "the inter-video branch never runs (lower rskp.memory.warmup_epochs, or give --epochs without "
                     "--set rskp.memory.warmup_epochs so the warm-up scales)")
    if ramp >= t.epochs:
        notes.append(f"[yellow]warning[/]: RSKP's terms ramp up over {ramp} epochs but the run has {t.epochs}: they "
                     "never reach full weight")
    return notes


def _run_train(args: argparse.Namespace) -> int:
    from ..engine import Trainer, load_experiment

    values, overrides = train_values(args), list(args.overrides)
    if not args.resume:
        overrides = config_notes(lambda: scaled_epochs(args.config, values, overrides)) + overrides
    if args.resume:
        expect = config_notes(lambda: load_experiment(args.config, overrides, values=values)) if args.config else None
        trainer = Trainer.resume(args.resume, values=values, overrides=overrides, expect=expect,
                                 overwrite=args.overwrite, progress=not args.no_progress, console=err_console)
        if trainer.is_main_process:
            err_console.print(f"resuming {markup(args.resume)} after epoch {trainer.epoch}", highlight=False)
    else:
        config = config_notes(lambda: load_experiment(args.config, overrides, values=values))
        trainer = Trainer(config, overwrite=args.overwrite, progress=not args.no_progress, console=err_console)
        if trainer.is_main_process:
            for line in schedule_notes(config, packaged_default=args.config is None):
                err_console.print(line, highlight=False, soft_wrap=True)
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        if trainer.is_main_process:
            err_console.print(_interrupted(trainer), highlight=False, soft_wrap=True)
        return 130
    if not trainer.is_main_process:  # torchrun: rank 0 evaluated, wrote the run folder and reports
        return 0
    console.print(_results_table(result, trainer))
    branches = ((result.best or {}).get("diagnostics") or {}).get("branches")
    if branches:  # train.diagnostics: every branch at the reported epoch
        parts = [f"{name} {b['avg']:.1f}" for name, b in branches.items() if b is not None]
        console.print(f"AVG by branch at epoch {result.best['epoch']} (test; inter and teacher read the memory of the "
                      f"ground-truth classes): {', '.join(parts)}", highlight=False)
    if trainer.output_dir is not None:
        logs = {"jsonl": "metrics.jsonl", "csv": "metrics.csv", "tensorboard": "tensorboard/"}
        names = ", ".join(logs[name] for name in trainer.config.train.active_loggers)
        console.print(f"checkpoints, config.yaml, results.json{', ' + names if names else ''} in "
                      f"{markup(trainer.output_dir)}", highlight=False)
    return 0


def _interrupted(trainer) -> str:  # noqa: ANN001 - Trainer
    """What Ctrl-C during training prints: the last checkpoint and the exact command that continues the run."""
    import shlex

    if trainer.last_checkpoint is None:
        where = ("no checkpoint was written yet" if trainer.output_dir is not None
                 else "nothing is saved (train.output_dir is empty)")
        again = ("; start the run again with --overwrite (its folder holds only what this run wrote)"
                 if trainer.output_dir is not None else "; start the run again to train")
        return f"[yellow]interrupted[/] in epoch {trainer.epoch + 1}: {where}{again}"
    path, epoch = trainer.last_checkpoint
    command = f"rskp train --resume {shlex.quote(str(path))}"
    return (f"[yellow]interrupted[/] in epoch {trainer.epoch + 1}: the last checkpoint is {markup(path)} "
            f"(after epoch {epoch}); continue with: {markup(command)}")


def _results_table(result, trainer):  # noqa: ANN001, ANN202 - FitResult, Trainer
    from rich.table import Table

    cfg = trainer.config
    variant = f"{cfg.head.name}+rskp" if cfg.rskp_enabled else cfg.head.name
    how = {"test": "highest test AVG (the paper's practice)", "heldout": "highest held-out AVG",
           "last": "the last evaluation"}[result.selection]
    table = Table(title=f"{variant}: detection mAP (%) on {trainer.datasets.test.name}/{trainer.datasets.test.subset}",
                  caption=f"best = {how}; cls = classification mAP")
    table.add_column("row")
    table.add_column("epoch", justify="right")
    for t in cfg.train.tiou:
        table.add_column(f"{t:g}", justify="right")
    table.add_column("AVG", justify="right")
    table.add_column("cls", justify="right")
    for label, record in (("best", result.best), ("last", result.final)):
        if record:
            test = record["test"]
            table.add_row(label, str(record["epoch"]), *[f"{m:.1f}" for m in test["map_percent"]],
                          f"[bold]{test['avg_map_percent']:.1f}[/]", f"{test['cmap_percent']:.1f}")
    return table


# ---------------------------------------------------------------------------------------------------- plot
class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default in its help, unless the default is None (the help says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)  # type: ignore[return-value]


def add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="figures of a trained run: per-video CAS of every branch (paper Fig. 4/6) and training curves (PNG)",
        description=(
            "For chosen videos of a run, one PNG each on a time axis in seconds: ground truth, every detection "
            "scoring at least --min-score (of any class: a class the video does not hold is marked 'not in GT'; the "
            "threshold is the dashed line), the CAS of the main, intra and inter branches and of the distillation "
            "teacher (pseudo-labels) for the video's classes on one y-scale, and the attention; plus curves.png from "
            "the run's metrics.csv and metrics.jsonl (loss terms every epoch, AVG and classification mAP per branch "
            "at evaluation epochs). With --predictions: new videos without ground truth, from the JSON of 'rskp "
            "predict' (and their CAS with --checkpoint and --features). Needs matplotlib: pip install "
            "'rskp-plugin[plot]'."
        ),
        formatter_class=_DefaultsShown,
    )
    p.add_argument("--run", default=None, metavar="DIR", help="run folder of 'rskp train' (uses best.pt)")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="a checkpoint (best.pt or last.pt) instead of --run; with --predictions, the model whose CAS "
                        "is drawn for the --features")
    p.add_argument("--predictions", default=None, metavar="FILE",
                   help="plot new videos: the detections JSON written by 'rskp predict' (no ground truth needed)")
    p.add_argument("--features", nargs="+", default=None, metavar="F.npy",
                   help="with --predictions and --checkpoint: the feature files given to 'rskp predict', to draw the "
                        "model's CAS and attention of each video")
    p.add_argument("--videos", default=None, metavar="NAME,NAME", help="comma-separated video names to plot")
    p.add_argument("--num-videos", type=int, default=4,
                   help="without --videos: plot this many videos, those where the teacher's CAS differs most from "
                        "the main branch's")
    p.add_argument("--min-score", type=float, default=0.1,
                   help="draw every detection scoring at least this (the dashed line); the evaluation scores all")
    p.add_argument("--split", choices=("test", "train", "heldout"), default="test", help="which videos")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: <run folder>/plots; with --predictions: <predictions file>_plots)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dpi", type=int, default=110, help="resolution of the PNG files (dots per inch, 10 to 600)")
    p.set_defaults(handler=_run_plot)


def _run_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from ..plot import require_matplotlib
    from ..plot_sources import plot_predictions, plot_run

    require_matplotlib()  # before loading anything: the one-line error comes first
    if args.num_videos < 1 or not 10 <= args.dpi <= 600:
        raise ConfigError(f"--num-videos must be >= 1 and --dpi from 10 to 600 (a figure at 600 dpi is already about "
                          f"50 megapixels), got {args.num_videos} and {args.dpi}")
    if (args.run is None) == (args.checkpoint is None) and args.predictions is None:
        raise ConfigError("pass one of --run DIR or --checkpoint FILE (a trained run), or --predictions FILE (new "
                          "videos)")
    if args.predictions is not None and args.run is not None:
        raise ConfigError("--predictions plots new videos from a detections file; --run plots a run's own videos: "
                          "pass one of them")
    if args.features and (args.predictions is None or args.checkpoint is None):
        raise ConfigError("--features draws a model's CAS of new videos: give it with --predictions and --checkpoint")
    videos = [v.strip() for v in args.videos.split(",") if v.strip()] if args.videos else None
    out = args.out
    if args.predictions is not None:
        folder = out or str(Path(args.predictions).with_name(Path(args.predictions).stem + "_plots"))
        paths = plot_predictions(args.predictions, out=folder, checkpoint=args.checkpoint,
                                 features=args.features or (), videos=videos, device=args.device, dpi=args.dpi,
                                 min_score=args.min_score)
    else:
        paths = plot_run(run=args.run, checkpoint=args.checkpoint, videos=videos, num_videos=args.num_videos,
                         out=out, split=args.split, device=args.device, dpi=args.dpi, min_score=args.min_score)
    for path in paths:
        console.print(str(path), highlight=False)
    return 0
