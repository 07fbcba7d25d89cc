"""Command-line interface: ``rskp`` (train, predict, evaluate, bench, heads, make-synthetic, plot) and ``rskp-bench``
(an alias of ``rskp bench``).

Each subcommand is a pair ``_add_<name>(subparsers)`` / ``_run_<name>(args) -> int``, the latter set as the
subparser's ``handler`` default. ``run_parsed`` is the one error handler: errors print one line and a hint;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from rich.console import Console

from .errors import RSKPError
from .sources import data_source_names

console = Console()
err_console = Console(stderr=True)


# ---------------------------------------------------------------------------------------------------- heads
def _add_heads(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "heads",
        help="list the installed heads (name, distribution, version, summary)",
        description=(
            "List every head registered through the rskp_plugin entry-point group: the four built-in heads and "
            "any installed third-party head, with the distribution and version that provides it and its summary. "
            "A plugin that fails to import is listed in red with the reason; 'rskp --debug heads' prints its "
            "traceback. Any listed name works with --head of 'rskp train' and 'rskp-bench'."
        ),
    )
    p.set_defaults(handler=_run_heads)


def _run_heads(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from .errors import DuplicateHeadError
    from .plugins import head_errors, head_specs

    rows = []
    for spec in head_specs().values():
        dist, _, version = spec.distribution.partition(" ")  # "<distribution> <version>"; "" if registered by hand
        rows.append((escape(spec.name), escape(dist or "-"), escape(version or "-"), escape(spec.summary)))
    errors = head_errors()
    for name, err in errors.items():  # broken plugins and clashing names stay visible, with the reason
        cause = err.__cause__
        if isinstance(err, DuplicateHeadError):
            status, reason = "registered twice, unusable", str(err)
        else:
            status = "failed to load"
            reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(err)
        dist, version = getattr(err, "distribution", "?"), getattr(err, "version", "?")
        rows.append((escape(name), escape(dist), escape(version),
                     f"[red]{status}[/] ({escape(reason)}); see `rskp --debug heads`"))
    table = Table(title="Installed heads")
    for column in ("name", "distribution", "version", "summary"):
        table.add_column(column, overflow="fold")
    for row in sorted(rows):
        table.add_row(*row)
    console.print(table)
    if getattr(args, "debug", False):  # the full import tracebacks of broken plugins
        import traceback

        for err in errors.values():
            err_console.print("".join(traceback.format_exception(err)), highlight=False, markup=False)
    return 0


# ---------------------------------------------------------------------------------------------------- train
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a head (alone or with RSKP) from a YAML experiment config",
        description=(
            "Train a head with RSKP (official recipe by default: Adam 5e-5, weight decay 5e-4, gradients summed over "
            "10 videos, 200 epochs, memory bank after epoch 100). Writes last.pt, best.pt and results.json to the "
            "output folder, by default runs/<config>-<head> (-norskp added for the head alone; config 'default' "
            "without --config), e.g. runs/quick-wum; a folder holding another run is refused unless --overwrite. "
            "Packaged configs: quick (synthetic, minutes on a CPU), paper, thumos14. Options left out "
            "keep the config's value. torch uses 1 CPU thread unless --threads or OMP_NUM_THREADS says otherwise (more "
            "threads spin against any other busy process). Writes config.yaml beside the checkpoints: --config "
            "<run folder>/config.yaml trains the same run again. Several processes "
            "(data-parallel; gloo on CPU, nccl on GPU): torchrun --nproc_per_node=N -m rskp_plugin.cli train ..."
        ),
    )
    p.add_argument("--config", default=None,
                   help="YAML experiment file or packaged config name (default: the built-in official recipe)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optimizer.lr=1e-4 (repeatable, applied last)")
    p.add_argument("--head", default=None, help="head name (see 'rskp heads'); sets head.name")
    p.add_argument("--no-rskp", action="store_true", help="train the head alone (rskp_enabled=false)")
    p.add_argument("--data", choices=data_source_names(), default=None,
                   help="sets data.source; wtalc unpickles only the files whose format needs it (the feature file, "
                        "segments.npy, labels.npy, labels_all.npy): use files you trust")
    p.add_argument("--data-root", default=None, help="data folder for wtalc/folders; sets data.root")
    p.add_argument("--dataset-name", default=None, help="W-TALC file prefix; sets data.dataset_name")
    p.add_argument("--epochs", type=int, default=None, help="sets train.epochs")
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
                        "metrics.jsonl, config.yaml, tensorboard/ and plots/)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch; 0 = auto (OMP_NUM_THREADS if set, else 1); sets train.threads")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue the run saved in this checkpoint (or run folder with last.pt), writing beside it; "
                        "its config is used, with options and --set overrides on top (--config must agree with it)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(handler=_run_train)


def _train_values(args: argparse.Namespace) -> dict[str, object]:
    """The config keys set by flags, as typed values (only ``--set`` is parsed as YAML)."""
    pairs = [("head.name", args.head), ("data.source", args.data), ("data.root", args.data_root),
             ("data.dataset_name", args.dataset_name), ("train.epochs", args.epochs), ("train.seed", args.seed),
             ("train.device", args.device), ("train.amp", args.amp), ("train.selection", args.selection),
             ("train.output_dir", args.output_dir), ("train.threads", args.threads)]
    values: dict[str, object] = {key: value for key, value in pairs if value is not None}
    if args.no_rskp:
        values["rskp_enabled"] = False
    return values


def _run_train(args: argparse.Namespace) -> int:
    from .engine import Trainer, load_experiment

    values, overrides = _train_values(args), list(args.overrides)
    if args.resume:
        expect = load_experiment(args.config, overrides, values=values) if args.config else None
        trainer = Trainer.resume(args.resume, values=values, overrides=overrides, expect=expect,
                                 overwrite=args.overwrite, progress=not args.no_progress, console=err_console)
        if trainer.is_main_process:
            err_console.print(f"resuming {_markup(args.resume)} after epoch {trainer.epoch}", highlight=False)
    else:
        trainer = Trainer(load_experiment(args.config, overrides, values=values), overwrite=args.overwrite,
                          progress=not args.no_progress, console=err_console)
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
        console.print(f"checkpoints, config.yaml, results.json and metrics.jsonl in {_markup(trainer.output_dir)}",
                      highlight=False)
    return 0


def _interrupted(trainer) -> str:  # noqa: ANN001 - Trainer
    """What Ctrl-C during training prints: the last checkpoint and the exact command that continues the run."""
    import shlex

    if trainer.last_checkpoint is None:
        where = ("no checkpoint was written yet" if trainer.output_dir is not None
                 else "nothing is saved (train.output_dir is empty)")
        return f"[yellow]interrupted[/] in epoch {trainer.epoch + 1}: {where}; start the run again to train"
    path, epoch = trainer.last_checkpoint
    command = f"rskp train --resume {shlex.quote(str(path))}"
    return (f"[yellow]interrupted[/] in epoch {trainer.epoch + 1}: the last checkpoint is {_markup(path)} "
            f"(after epoch {epoch}); continue with: {_markup(command)}")


def _markup(text: object) -> str:
    """``text`` shown literally inside rich markup (paths and messages may hold square brackets)."""
    from rich.markup import escape

    return escape(str(text))


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
def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="figures of a trained run: per-video CAS of every branch (paper Fig. 4/6) and training curves (PNG)",
        description=(
            "For chosen videos of a run, one PNG each on a time axis in seconds: ground truth, the fused detections, "
            "the CAS of the main, intra and inter branches and of the distillation teacher (pseudo-labels) for the "
            "video's classes, and the attention; plus curves.png from the run's metrics.jsonl (loss terms, AVG and "
            "classification mAP per branch and epoch). Needs matplotlib: pip install 'rskp-plugin[plot]'."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", default=None, metavar="DIR", help="run folder of 'rskp train' (uses best.pt)")
    source.add_argument("--checkpoint", default=None, metavar="FILE", help="a checkpoint (best.pt or last.pt)")
    p.add_argument("--videos", default=None, metavar="NAME,NAME", help="comma-separated video names to plot")
    p.add_argument("--num-videos", type=int, default=4,
                   help="without --videos: plot this many videos, those where the teacher's CAS differs most from "
                        "the main branch's")
    p.add_argument("--split", choices=("test", "train", "heldout"), default="test", help="which videos")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: <run folder>/plots)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dpi", type=int, default=110, help="resolution of the PNG files (dots per inch)")
    p.set_defaults(handler=_run_plot)


def _run_plot(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .plot import plot_run, require_matplotlib

    require_matplotlib()  # before loading anything: the one-line error comes first
    if args.num_videos < 1 or args.dpi < 10:
        raise ConfigError(f"--num-videos must be >= 1 and --dpi >= 10, got {args.num_videos} and {args.dpi}")
    videos = [v.strip() for v in args.videos.split(",") if v.strip()] if args.videos else None
    paths = plot_run(run=args.run, checkpoint=args.checkpoint, videos=videos, num_videos=args.num_videos,
                     out=args.out, split=args.split, device=args.device, dpi=args.dpi)
    for path in paths:
        console.print(str(path), highlight=False)
    return 0


# ---------------------------------------------------------------------------------------------------- predict
def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="ActivityNet-format detections for new feature files with a trained checkpoint",
        description=(
            "Run a trained model on feature files and write detections as ActivityNet results JSON "
            '({"version", "results": {video: [{"label", "score", "segment": [start_s, end_s]}]}, "external_data"}).'
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint written by 'rskp train' (best.pt or last.pt)")
    p.add_argument("--features", required=True, nargs="+", metavar="F.npy",
                   help="(T, D) .npy files (one video each, named after the file), W-TALC feature files (one video "
                        "per entry, named from the videoname.npy of the annotations beside it; the only files "
                        "unpickled, so pass only files you trust), folders of .npy files, or a features/<split> "
                        "folder of the per-video layout (rgb/ and flow/ concatenated); anything else (a pickle, "
                        "strings, a truncated file) is refused")
    p.add_argument("--subset", default=None,
                   help="W-TALC files only: predict the videos of this subset (subset.npy), e.g. test")
    p.add_argument("--out", required=True, help="where to write the detections JSON")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=None,
                   help="videos per forward pass (default: the checkpoint's train.eval_batch_size, so that the "
                        "detections are those of the run's evaluations)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch; 0 = auto (OMP_NUM_THREADS if set, "
                   "else 1)")
    p.set_defaults(handler=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    import json

    from .engine import set_threads
    from .engine.predict import check_predictions_path, predict_files
    from .errors import ConfigError, OutputError

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1 (videos per forward pass), got {args.batch_size}")
    out = check_predictions_path(args.out, checkpoint=args.checkpoint, features=args.features)  # before any work
    set_threads(args.threads)
    detections = predict_files(args.checkpoint, args.features, device=args.device, batch_size=args.batch_size,
                               subset=args.subset)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(detections, indent=1))
    except OSError as exc:
        raise OutputError(f"cannot write --out {str(out)!r} ({exc.strerror or exc}); pass a writable path") from exc
    count = sum(len(v) for v in detections["results"].values())
    console.print(f"{count} detections for {len(detections['results'])} videos written to {_markup(out)}",
                  highlight=False)
    return 0


# ---------------------------------------------------------------------------------------------------- evaluate
def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="detection mAP of ActivityNet-format predictions (ActivityNet, RSKP or W-TALC protocol)",
        description=(
            "Score detections against ground truth. Both files use the ActivityNet JSON formats: "
            '{"database": {video: {"subset", "annotations": [{"segment", "label"}]}}} and '
            '{"results": {video: [{"label", "score", "segment"}]}}. Results are in percent everywhere, as in '
            'results.json of rskp train and rskp-bench; --json prints {"tiou": [...], "map_percent": [...], "avg_map_percent": x, '
            '"per_class_ap_percent": {class: [...]}, ...}.'
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    gt = p.add_mutually_exclusive_group(required=True)
    gt.add_argument("--ground-truth", metavar="GT.json",
                    help="ground-truth JSON, or a folder of W-TALC .npy annotations (its --subset videos with GT; "
                         "segments.npy and labels.npy are unpickled: use files you trust)")
    gt.add_argument("--data", choices=data_source_names(),
                    help="score against the test set of this data source, loaded as 'rskp train' loads it (with "
                         "--data-root, --dataset-name); predictions of other videos and of classes without ground "
                         "truth there are left out, as in training's evaluations")
    gt.add_argument("--config", metavar="CONFIG.yaml",
                    help="score against the test set of this experiment config (e.g. a run folder's config.yaml), "
                         "with its train.protocol and train.tiou unless given: reproduces the run's evaluation")
    p.add_argument("--data-root", default=None, help="with --data wtalc/folders: the data folder")
    p.add_argument("--dataset-name", default=None, help="with --data wtalc: the W-TALC file prefix")
    p.add_argument("--predictions", required=True, metavar="PRED.json", help="predictions JSON (e.g. rskp predict)")
    p.add_argument("--tiou", default=None,
                   help="tIoU thresholds: start:stop:step (stop included, exact decimals) or a comma list "
                        "(default: 0.1:0.7:0.1, or the --config's train.tiou)")
    p.add_argument("--protocol", default=None, choices=("activitynet", "rskp", "wtalc"),
                   help="activitynet (default, or the --config's train.protocol): official code, seconds; rskp: "
                        "RSKP's snippet-grid variant (the paper's numbers); wtalc: W-TALC's first-fit, "
                        "non-interpolated variant")
    p.add_argument("--order", default="official", choices=("official", "stable"),
                   help="official: the protocol's own (unstable) tie order; stable: ties keep file/GT order")
    p.add_argument("--subset", default=None,
                   help="evaluate only GT videos of this subset (THUMOS14 gt.json: test); default: all videos, "
                        "or 'test' for a W-TALC folder")
    p.add_argument("--ambiguous", default=None, metavar="Ambiguous_test.txt",
                   help="drop predictions touching these ambiguous segments (RSKP/W-TALC do)")
    p.add_argument("--snippets-per-second", type=float, default=None,
                   help="snippet grid of the rskp/wtalc protocols (default: 25/16 for I3D, 16-frame snippets at "
                        "25 fps; with --data/--config the data set's)")
    p.add_argument("--compat", action="store_true",
                   help="score segments that end before they start as the official ActivityNet code does (its 0/0 "
                        "tIoU matches them to any segment of the same length: reversed ground truth scores 100), "
                        "with a warning; without it they are an error")
    p.add_argument("--per-class", action="store_true", help="also show the AP of every class")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(handler=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import warnings

    from rich.markup import escape

    from .evaluation import EvaluationWarning, detection_map, load_wtalc_ground_truth, parse_tiou, result_table

    ground_truth, subset, predictions = args.ground_truth, args.subset, args.predictions
    protocol, tiou, sps, ambiguous = args.protocol, args.tiou, args.snippets_per_second, args.ambiguous
    if ground_truth is not None and Path(ground_truth).is_dir():
        ground_truth, subset = load_wtalc_ground_truth(ground_truth, subset or "test"), None
    elif ground_truth is None:  # --data / --config: the test set of a training config
        test, train_cfg = _evaluation_set(args)
        protocol, tiou = protocol or train_cfg.protocol, tiou or ",".join(f"{t:g}" for t in train_cfg.tiou)
        ground_truth, subset, sps = test.ground_truth(), None, sps or test.snippets_per_second
        ambiguous = ambiguous or (dict(test.ambiguous) or None)
        predictions = _restrict_predictions(predictions, ground_truth)
    with warnings.catch_warnings(record=True) as caught:  # the evaluation's warnings become one printed line each
        warnings.simplefilter("always", EvaluationWarning)
        result = detection_map(
            ground_truth, predictions, parse_tiou(tiou or "0.1:0.7:0.1"), protocol=protocol or "activitynet",
            order=args.order, snippets_per_second=sps or 25 / 16, ambiguous=ambiguous, subset=subset,
            compat=args.compat,
        )
    for w in caught:
        if issubclass(w.category, EvaluationWarning):
            err_console.print(f"[yellow]warning:[/] {escape(str(w.message))}", highlight=False)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if result.num_unscored:
        err_console.print(f"[yellow]note:[/] {result.num_unscored} predictions of classes without ground truth in "
                          "the evaluated videos were left out (they change no class's AP)", highlight=False)
    if len(result.subsets) > 1:
        err_console.print(f"[yellow]note:[/] the ground truth of {len(result.subsets)} subsets "
                          f"({', '.join(map(str, result.subsets))}) was evaluated together; pass --subset to pick one",
                          highlight=False)
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        console.print(result_table(result, per_class=args.per_class))
    return 0


def _evaluation_set(args: argparse.Namespace):  # noqa: ANN202 - (VideoDataset, TrainConfig)
    """The test set (and train settings) named by ``--config`` or ``--data/--data-root/--dataset-name``."""
    from .engine import load_experiment
    from .engine.build import load_split

    overrides = [f"{key}={value}" for key, value in (("data.source", args.data), ("data.root", args.data_root),
                                                     ("data.dataset_name", args.dataset_name)) if value is not None]
    if args.subset is not None:
        overrides.append(f"data.test_subset={args.subset}")
    config = load_experiment(args.config, overrides)
    return load_split(config, "test"), config.train


def _restrict_predictions(path: str, ground_truth: dict) -> dict:
    """The predictions of the ground truth's videos and classes only, as training's evaluation scores them."""
    from .formats.activitynet import read_activitynet_json

    data, source = read_activitynet_json(path, "predictions", "results")
    videos = ground_truth["database"]
    classes = {a["label"] for v in videos.values() for a in v["annotations"]}
    results = {name: [d for d in dets if isinstance(d, dict) and d.get("label") in classes]
               for name, dets in data["results"].items() if name in videos}
    others = len(data["results"]) - len(results)
    if others:
        err_console.print(f"[yellow]note:[/] {others} predicted videos of {source} are not in the test set and were "
                          "left out", highlight=False)
    return {**data, "results": results}


# ---------------------------------------------------------------------------------------------------- make-synthetic
def _add_make_synthetic(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-synthetic",
        help="write the synthetic THUMOS14-shaped dataset in the W-TALC format",
        description=(
            "Generate the synthetic dataset (what --data synthetic trains on) and write it in the W-TALC format: "
            "DIR/<NAME>-I3D-JOINTFeatures.npy and DIR/<NAME>-Annotations/*.npy, training videos as subset "
            "'validation' and test videos as 'test', so that --data wtalc --data-root DIR reads it back "
            "identically. At the default width of 2048 the feature file is about 1 GB. --config quick writes exactly "
            "the set that config trains on (its data.seed, feature_dim, difficulty and sizes); options given "
            "explicitly win. --layout folders writes the per-video layout instead (features/{train,test}/{rgb,flow}/"
            "<video>.npy and gt.json: --data folders --data-root DIR)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (created if missing)")
    p.add_argument("--config", default=None,
                   help="experiment config (file or packaged name, e.g. quick) whose synthetic data to write")
    p.add_argument("--layout", choices=("wtalc", "folders"), default="wtalc",
                   help="W-TALC files (--data wtalc) or per-video folders with gt.json (--data folders)")
    p.add_argument("--seed", type=int, default=None, help="seed of the generator (same seed, same data; default 0)")
    p.add_argument("--feature-dim", type=int, default=None,
                   help="feature width D (>= 16; I3D RGB+flow: 2048, the default)")
    p.add_argument("--difficulty", type=float, default=None,
                   help="0 = trivially separable; 1 = calibrated default; larger = harder")
    p.add_argument("--num-train", type=int, default=None, help="training videos (THUMOS14-reduced: 200, the default)")
    p.add_argument("--num-test", type=int, default=None, help="test videos (THUMOS14-reduced: 212, the default)")
    p.add_argument("--dataset-name", default=None,
                   help="<NAME> prefix of the W-TALC files (default: the config's data.dataset_name, Thumos14reduced)")
    p.set_defaults(handler=_run_make_synthetic)


def _run_make_synthetic(args: argparse.Namespace) -> int:
    import time

    import attrs

    from rich.table import Table

    from .data import make_synthetic, write_folders, write_wtalc
    from .engine import load_experiment
    from .engine.config import MAX_SEED
    from .errors import ConfigError

    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed must be an integer from 0 to 2**64 - 1, got {args.seed}")
    data = load_experiment(args.config).data  # the defaults without --config
    pairs = (("seed", args.seed), ("feature_dim", args.feature_dim), ("difficulty", args.difficulty),
             ("num_train", args.num_train), ("num_test", args.num_test), ("dataset_name", args.dataset_name))
    try:
        data = attrs.evolve(data, **{key: value for key, value in pairs if value is not None})
    except (TypeError, ValueError) as exc:  # the DataConfig validators: --feature-dim 0, --num-train 1, ...
        raise ConfigError(f"make-synthetic: {exc}; see rskp make-synthetic --help") from exc
    start = time.perf_counter()
    with console.status("generating synthetic videos"):
        train, test = make_synthetic(
            seed=data.seed, feature_dim=data.feature_dim, difficulty=data.difficulty, num_train=data.num_train,
            num_test=data.num_test,
        )
    generated = time.perf_counter() - start
    with console.status(f"writing {args.out}"):
        if args.layout == "folders":
            out = write_folders(train, test, args.out)
            how = "per-video folders + gt.json: --data folders --data-root"
        else:
            out = write_wtalc(train, test, args.out, dataset_name=data.dataset_name)
            how = f"W-TALC format, {data.dataset_name}: --data wtalc --data-root"
    table = Table(title=f"Synthetic THUMOS14-shaped data ({how} {_markup(out)})")
    for column in ("subset", "videos", "instances", "snippets", "feature dim"):
        table.add_column(column, justify="right")
    for ds in (train, test):
        table.add_row(ds.subset, str(len(ds)), str(sum(len(v.segments) for v in ds)),
                      str(sum(v.num_snippets for v in ds)), str(ds.feature_dim))
    console.print(table)
    console.print(f"generated in {generated:.1f} s, written in {time.perf_counter() - start - generated:.1f} s")
    return 0


# ---------------------------------------------------------------------------------------------------- bench
def _add_bench(sub: argparse._SubParsersAction) -> None:
    from . import bench

    p = sub.add_parser("bench", help="the paper's Table 6 for one head or all: head alone vs head + RSKP",
                       description=bench.DESCRIPTION)
    bench.add_arguments(p)  # the options of the rskp-bench alias, and its handler


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_heads, _add_train, _add_predict, _add_evaluate, _add_bench, _add_make_synthetic, _add_plot,
]


def build_parser() -> argparse.ArgumentParser:
    """The ``rskp`` parser; each subcommand's ``handler`` (``set_defaults``) runs it."""
    parser = argparse.ArgumentParser(
        prog="rskp", description="RSKP for any weakly supervised temporal action localization head."
    )
    from .bench import VersionAction

    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``rskp``; returns the exit status."""
    return run_parsed(build_parser(), argv)


def bench_main(argv: Sequence[str] | None = None) -> int:
    """``rskp-bench``: an alias of ``rskp bench`` (the same options and output) kept for existing scripts."""
    from .bench import build_parser as bench_parser

    return run_parsed(bench_parser(), argv)


def run_parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run its ``handler``: the one error handler of every command. An ``RSKPError`` prints one
    line and returns 2, an interrupt returns 130; ``--debug`` shows the traceback instead."""
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return args.handler(args)
    except RSKPError as exc:
        if debug:
            raise
        # escaped: a message may hold square brackets ("[start, end]", "wum[rskp-head-wum]") that are not markup
        err_console.print(f"[bold red]error:[/] {_markup(exc)}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        err_console.print("[yellow]interrupted[/]", highlight=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
