"""What ``rskp plot`` draws from: a trained run's videos (``plot_run``) or predictions for new videos without
ground truth (``plot_predictions``), turned into the figures of ``rskp_plugin.plot``.

Every detection scoring at least the threshold is drawn, of any class: a detection of a class the video's ground
truth does not hold (a false positive) is drawn and marked as such.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import CheckpointError, ConfigError, DataError
from .plot import VideoTrace, curves_figure, read_epoch_log, require_matplotlib, video_figure

#: The default lowest score drawn (``rskp plot --min-score``).
DEFAULT_MIN_SCORE = 0.1


def find_checkpoint(run: str | os.PathLike[str] | None, checkpoint: str | os.PathLike[str] | None) -> Path:
    """The checkpoint to plot: ``checkpoint`` as given, else ``best.pt`` (or ``last.pt``) of the run folder."""
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {os.fspath(path)!r} does not exist; pass a best.pt/last.pt of a run")
        return path
    folder = Path(run) if run is not None else None
    if folder is None or not folder.is_dir():
        raise CheckpointError(f"run folder {os.fspath(run)!r} does not exist; pass --run DIR (the train.output_dir "
                              "of 'rskp train') or --checkpoint FILE")
    for name in ("best.pt", "last.pt"):
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"run folder {os.fspath(folder)!r} has no best.pt or last.pt; did the run save any?")


def _above(detections: Sequence[dict[str, Any]], threshold: float) -> tuple[tuple[str, float, float, float], ...]:
    """(class, score, start, end) of the detections scoring at least ``threshold``, best first."""
    kept = [d for d in detections if float(d["score"]) >= threshold]
    return tuple((str(d["label"]), float(d["score"]), *map(float, d["segment"][:2]))
                 for d in sorted(kept, key=lambda d: -float(d["score"])))


def trace_videos(model: Any, dataset: Any, *, names: Sequence[str] | None = None, num_videos: int = 4,
                 device: Any = "cpu", title: str = "", batch_size: int = 16,
                 min_score: float = DEFAULT_MIN_SCORE) -> list[VideoTrace]:
    """Traces of the videos ``names``, or of the ``num_videos`` videos where the teacher's CAS differs most from
    the main branch's (mean |teacher - main| over the video's ground-truth classes; main vs intra before the
    memory bank is ready; the first videos for the head alone), with every detection scoring ``min_score`` or
    more, of any class."""
    import torch

    from .engine.diagnostics import collect_branches
    from .localization import localize

    if names is not None:
        for name in names:
            dataset.video(name)  # DataError naming the video and the set
    device = torch.device(device) if isinstance(device, str) else device
    fused, branches, _ = collect_branches(model, dataset, collate=_collate(), device=device, batch_size=batch_size)
    videos = dataset.videos
    index = {v.name: i for i, v in enumerate(videos)}
    if names is None:
        other = "teacher" if "inter" in branches else "intra"
        if "main" in branches and other in branches:
            gaps = [_cas_gap(branches["main"][1][i], branches[other][1][i], videos[i].labels)
                    for i in range(len(videos))]
            order = np.argsort(-np.asarray(gaps), kind="stable")
        else:
            order = np.arange(len(videos))
        names = [videos[i].name for i in order[:num_videos]]
    chosen = [index[n] for n in names]
    detections = localize(
        [videos[i].name for i in chosen], [fused[0][i] for i in chosen], [fused[1][i] for i in chosen],
        None if fused[2] is None else [fused[2][i] for i in chosen], model.traits.settings,
        list(dataset.class_names), snippets_per_second=dataset.snippets_per_second,
        score_cas=None if fused[3] is None else [fused[3][i] for i in chosen],
    )["results"]
    traces = []
    for i in chosen:
        video = videos[i]
        classes = [int(c) for c in np.flatnonzero(np.asarray(video.labels) > 0)] or [int(np.argmax(fused[0][i]))]
        shown = tuple(dataset.class_names[c] for c in classes)
        seconds = (np.arange(len(fused[1][i])) + 0.5) / float(dataset.snippets_per_second)
        seg_classes = np.array([classes.index(int(c)) if int(c) in classes else -1 for c in video.segment_labels],
                               dtype=np.int64)
        traces.append(VideoTrace(
            name=video.name, seconds=seconds, class_names=shown,
            segments=np.asarray(video.segments, dtype=np.float64).reshape(-1, 2), segment_classes=seg_classes,
            cas={name: out[1][i][:, classes] for name, out in branches.items()},
            attention={name: out[2][i] for name, out in branches.items() if out[2] is not None},
            detections=_above(detections[video.name], min_score), threshold=min_score,
            title=f"{video.name} ({', '.join(shown)}){' - ' + title if title else ''}",
        ))
    return traces


def _cas_gap(a: np.ndarray, b: np.ndarray, labels: Any) -> float:
    classes = np.flatnonzero(np.asarray(labels) > 0)
    if classes.size == 0:
        return 0.0
    return float(np.abs(a[:, classes] - b[:, classes]).mean())


def _collate() -> Any:
    from .data import collate

    return collate


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _save(fig: Any, file: Path, dpi: int, written: list[Path]) -> None:
    plt = require_matplotlib()
    fig.savefig(file, dpi=dpi)
    plt.close(fig)
    written.append(file)


def plot_run(*, run: str | os.PathLike[str] | None = None, checkpoint: str | os.PathLike[str] | None = None,
             videos: Sequence[str] | None = None, num_videos: int = 4, out: str | os.PathLike[str] | None = None,
             split: str = "test", device: str = "cpu", dpi: int = 110,
             min_score: float = DEFAULT_MIN_SCORE) -> list[Path]:
    """Write ``video_<name>.png`` for the chosen videos and ``curves.png`` (when the run has ``metrics.jsonl``;
    the losses of every epoch from ``metrics.csv`` where it has one) to ``out`` (default: ``<run folder>/plots``);
    returns the paths written.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        CheckpointError, DataError, ConfigError: no checkpoint, unknown video, unreadable metrics file.
    """
    require_matplotlib()
    from .checkpoint import load_checkpoint
    from .config_io import from_mapping
    from .engine import ExperimentConfig, build_datasets
    from .engine.loggers import read_metrics
    from .engine.predict import load_trained_model

    path = find_checkpoint(run, checkpoint)
    folder = Path(run) if run is not None else path.parent
    target = Path(out) if out is not None else folder / "plots"
    data = load_checkpoint(path)
    config = from_mapping(ExperimentConfig, data["config"])
    model, _ = load_trained_model(path, device)
    datasets = build_datasets(config)
    dataset = {"test": datasets.test, "train": datasets.train, "heldout": datasets.heldout}[split]
    if dataset is None:
        raise DataError(f"the run has no {split} split (train.selection is not heldout); use --split test or train")
    trained_on = list(data["meta"]["class_names"])
    if list(dataset.class_names) != trained_on:
        raise DataError(
            f"the data {os.fspath(path)}'s config builds ({dataset.name}/{dataset.subset}, {len(dataset.class_names)} "
            f"classes) is not what the model was trained on ({len(trained_on)} classes); was the run trained on "
            "data passed in code, or has data.root changed?"
        )
    variant = f"{config.head.name}+rskp" if config.rskp_enabled else config.head.name
    title = f"{variant}, epoch {data['epoch']} ({path.name}, selected on {config.train.selection})"
    traces = trace_videos(model, dataset, names=videos, num_videos=num_videos, device=device, title=title,
                          min_score=min_score)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for trace in traces:
        _save(video_figure(trace), target / f"video_{_safe(trace.name)}.png", dpi, written)
    metrics, per_epoch = folder / "metrics.jsonl", folder / "metrics.csv"
    if metrics.is_file():
        epochs = read_epoch_log(per_epoch) if per_epoch.is_file() else None
        fig = curves_figure(read_metrics(metrics), title=f"{variant}: {folder}", epochs=epochs)
        _save(fig, target / "curves.png", dpi, written)
    return written


def read_predictions(path: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """The ``results`` of a detections JSON (``rskp predict``'s ActivityNet format); ``ConfigError`` says what is
    wrong with it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the predictions {os.fspath(path)!r} ({exc}); pass the JSON file that "
                          "'rskp predict' wrote") from exc
    results = data.get("results") if isinstance(data, dict) else None
    ok = isinstance(results, dict) and all(
        isinstance(ds, list) and all(isinstance(d, dict) and {"label", "score", "segment"} <= set(d) for d in ds)
        for ds in results.values())
    if not ok:
        raise ConfigError(f"{os.fspath(path)} is not a detections file: expected {{\"results\": {{video: [{{\"label\", "
                          "\"score\", \"segment\": [start_s, end_s]}}]}}}} as 'rskp predict' writes")
    return results


def plot_predictions(predictions: str | os.PathLike[str], *, out: str | os.PathLike[str],
                     checkpoint: str | os.PathLike[str] | None = None,
                     features: Sequence[str | os.PathLike[str]] = (), videos: Sequence[str] | None = None,
                     device: str = "cpu", dpi: int = 110, min_score: float = DEFAULT_MIN_SCORE) -> list[Path]:
    """``video_<name>.png`` for new videos (no ground truth): every detection of ``predictions`` scoring at least
    ``min_score``, and, with ``checkpoint`` and ``features`` (as ``rskp predict`` takes them), the model's CAS of
    the detected classes and its attention. Returns the paths written."""
    require_matplotlib()
    results = read_predictions(predictions)
    names = list(videos) if videos else sorted(results)
    missing = [n for n in names if n not in results]
    if missing:
        raise DataError(f"{os.fspath(predictions)} holds no video {missing[0]!r}; it has: "
                        f"{', '.join(sorted(results)[:10])}{' ...' if len(results) > 10 else ''}")
    signals = _signals(checkpoint, features, device) if checkpoint is not None and features else {}
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in names:
        dets = _above(results[name], min_score)
        classes = tuple(dict.fromkeys(d[0] for d in dets))
        seconds, cas, attention = signals.get(name, (None, None, None))
        if seconds is None:
            seconds = np.linspace(0.0, max([d[3] for d in dets] + [1.0]), 2)
        trace = VideoTrace(
            name=name, seconds=seconds, class_names=classes, segments=np.zeros((0, 2)),
            segment_classes=np.zeros(0, dtype=np.int64),
            cas={} if cas is None else {"fused": cas(classes)},
            attention={} if attention is None else {"fused": attention}, detections=dets, threshold=min_score,
            title=f"{name} (no ground truth) - {Path(predictions).name}", ground_truth=False,
        )
        _save(video_figure(trace), target / f"video_{_safe(name)}.png", dpi, written)
    return written


def _signals(checkpoint: str | os.PathLike[str], features: Sequence[str | os.PathLike[str]],
             device: str) -> dict[str, tuple[np.ndarray, Any, np.ndarray | None]]:
    """Video name -> (snippet times in seconds, class names -> (T, K) CAS, attention) of the checkpoint's model on
    the feature files."""
    from .data import VideoDataset, VideoRecord
    from .engine.inference import collect_outputs
    from .engine.predict import load_trained_model, read_feature_files

    model, meta = load_trained_model(checkpoint, device)
    sps, classes = float(meta["snippets_per_second"]), list(meta["class_names"])
    videos = [VideoRecord(name, x, np.zeros(len(classes), dtype=np.float32), len(x) / sps, np.zeros((0, 2)),
                          np.zeros(0, np.int64))
              for name, x in read_feature_files(features, feature_dim=int(meta["feature_dim"]))]
    dataset = VideoDataset("plot", "plot", classes, videos, snippets_per_second=sps)
    _, cas, attention, _ = collect_outputs(model, dataset, collate=_collate(), device=next(model.parameters()).device,
                                           batch_size=int(meta.get("eval_batch_size", 16)))
    out = {}
    for video, c, a in zip(videos, cas, attention):
        seconds = (np.arange(len(c)) + 0.5) / sps
        out[video.name] = (seconds, lambda shown, c=c: c[:, [classes.index(k) for k in shown]], a)
    return out
