"""``rskp predict`` (detections for new feature files) and ``rskp evaluate`` (detection mAP of a predictions
file)."""

from __future__ import annotations

import argparse
import sys

from . import console, err_console, markup
from ..sources import data_source_names


# ---------------------------------------------------------------------------------------------------- predict
def add_predict(sub: argparse._SubParsersAction) -> None:
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
                        "unpickled, by an unpickler that rebuilds arrays and plain values only), folders of .npy "
                        "files, or a features/<split> folder of the per-video layout (rgb/ and flow/ concatenated); "
                        "anything else (a pickle, strings, a truncated file) is refused")
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

    from ..engine import set_threads
    from ..engine.predict import check_predictions_path, predict_files
    from ..errors import ConfigError, OutputError

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
    console.print(f"{count} detections for {len(detections['results'])} videos written to {markup(out)}",
                  highlight=False)
    return 0


# ---------------------------------------------------------------------------------------------------- evaluate
def add_evaluate(sub: argparse._SubParsersAction) -> None:
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
                         "segments.npy and labels.npy are unpickled, by an unpickler that rebuilds arrays and plain "
                         "values only)")
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

    from ..evaluation import EvaluationWarning, detection_map, load_wtalc_ground_truth, parse_tiou, result_table

    ground_truth, subset, predictions = args.ground_truth, args.subset, args.predictions
    protocol, tiou, sps, ambiguous = args.protocol, args.tiou, args.snippets_per_second, args.ambiguous
    with warnings.catch_warnings(record=True) as caught:  # the evaluation's warnings become one printed line each
        warnings.simplefilter("always", EvaluationWarning)
        if ground_truth is not None and Path(ground_truth).is_dir():
            ground_truth, subset = load_wtalc_ground_truth(ground_truth, subset or "test"), None
        elif ground_truth is None:  # --data / --config: the test set of a training config
            test, train_cfg = _evaluation_set(args)
            protocol, tiou = protocol or train_cfg.protocol, tiou or ",".join(f"{t:g}" for t in train_cfg.tiou)
            ground_truth, subset, sps = test.ground_truth(), None, sps or test.snippets_per_second
            ambiguous = ambiguous or (dict(test.ambiguous) or None)
            predictions = _restrict_predictions(predictions, ground_truth)
        result = detection_map(
            ground_truth, predictions, parse_tiou(tiou or "0.1:0.7:0.1"), protocol=protocol or "activitynet",
            order=args.order, snippets_per_second=sps or 25 / 16, ambiguous=ambiguous, subset=subset,
            compat=args.compat,
        )
    from ..data import DataWarning

    for w in caught:
        if issubclass(w.category, (EvaluationWarning, DataWarning)):
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
    from ..engine import load_experiment
    from ..engine.build import load_split

    overrides = [f"{key}={value}" for key, value in (("data.source", args.data), ("data.root", args.data_root),
                                                     ("data.dataset_name", args.dataset_name)) if value is not None]
    if args.subset is not None:
        overrides.append(f"data.test_subset={args.subset}")
    config = load_experiment(args.config, overrides)
    return load_split(config, "test"), config.train


def _restrict_predictions(path: str, ground_truth: dict) -> dict:
    """The predictions of the ground truth's videos and classes only, as training's evaluation scores them."""
    from ..formats.activitynet import read_activitynet_json

    from ..evaluation import EvaluationWarning

    data, source = read_activitynet_json(path, "predictions", "results", warning=EvaluationWarning)
    videos = ground_truth["database"]
    classes = {a["label"] for v in videos.values() for a in v["annotations"]}
    results = {name: [d for d in dets if isinstance(d, dict) and d.get("label") in classes]
               for name, dets in data["results"].items() if name in videos}
    others = len(data["results"]) - len(results)
    if others:
        err_console.print(f"[yellow]note:[/] {others} predicted videos of {source} are not in the test set and were "
                          "left out", highlight=False)
    return {**data, "results": results}
