"""``rskp plot``: the paper's Fig. 4/6 for videos of a trained run, and its training curves (matplotlib, Agg).

Per video, one figure on one time axis (seconds): the ground-truth instances and the final (fused) detections, the
main branch's CAS for the video's classes, the intra- and inter-video branches' CAS, the distillation teacher's
(pseudo-label) CAS and the attention of each branch, with the ground truth shaded everywhere. The inter branch and
the teacher read the memory bank for the video's ground-truth classes, as the diagnostics do
(``engine.diagnostics``). Per run, ``curves.png``: the loss terms, and AVG and classification mAP of every branch
per evaluation epoch, from ``metrics.jsonl``.

matplotlib is optional (``pip install 'rskp-plugin[plot]'``) and imported only here, lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import attrs
import numpy as np

from .errors import CheckpointError, DataError, MissingDependencyError

BRANCH_STYLE = {  # colour, line width of each branch in the curves
    "fused": ("black", 2.0), "main": ("tab:blue", 1.5), "intra": ("tab:green", 1.2), "inter": ("tab:purple", 1.2),
    "teacher": ("tab:red", 2.0),
}


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or ``MissingDependencyError`` with the install command."""
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingDependencyError(
            "rskp plot needs matplotlib, which is not installed: pip install 'rskp-plugin[plot]' (or matplotlib)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@attrs.frozen(kw_only=True)
class VideoTrace:
    """Everything the video figure shows, in numpy (T snippets, K shown classes).

    Attributes:
        name: video id.
        seconds: (T,) centre of each snippet in seconds.
        class_names: the K classes shown (the video's ground-truth classes, else its top-scoring class).
        segments: (N, 2) ground-truth instances in seconds; segment_classes: (N,) their index into class_names
            (-1 for an instance of a class not shown).
        cas: branch name -> (T, K) CAS of the shown classes ("main", "intra", "inter", "teacher" where available).
        attention: branch name -> (T,) attention, where the head has one.
        detections: (label index into class_names, score, start s, end s) of the fused prediction, best first.
        title: figure title.
    """

    name: str
    seconds: np.ndarray
    class_names: tuple[str, ...]
    segments: np.ndarray
    segment_classes: np.ndarray
    cas: dict[str, np.ndarray]
    attention: dict[str, np.ndarray]
    detections: tuple[tuple[int, float, float, float], ...]
    title: str


def video_figure(trace: VideoTrace, *, max_detections: int = 8) -> Any:
    """The Fig. 4/6-style figure of one video; returns the matplotlib ``Figure`` (axes titled by panel)."""
    plt = require_matplotlib()
    panels = [("ground truth (top) and fused detections (bottom)", None)]
    panels += [(f"{name} CAS" + (" (memory of the video's GT classes)" if name == "inter" else "")
                + (" = pseudo-labels of the distillation" if name == "teacher" else ""), name)
               for name in ("main", "intra", "inter", "teacher")]
    panels.append(("attention", "attention"))
    heights = [1.0 + 0.12 * min(len(trace.detections), max_detections)] + [1.0] * (len(panels) - 1)
    height = 1.5 * sum(heights) + 1.0  # inches
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, height), sharex=True,
                             gridspec_kw={"hspace": 0.6, "height_ratios": heights})
    fig.subplots_adjust(left=0.1, right=0.85, top=1.0 - 0.75 / height, bottom=0.6 / height)
    colours = plt.get_cmap("tab10")
    end = float(trace.seconds[-1] + (trace.seconds[1] - trace.seconds[0] if len(trace.seconds) > 1 else 1.0))
    for ax, (title, what) in zip(axes, panels):
        ax.set_title(title, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        for (s, e), k in zip(trace.segments, trace.segment_classes):  # ground truth shaded in every panel
            ax.axvspan(s, e, color=colours(k % 10) if k >= 0 else "grey", alpha=0.12, lw=0)
        if what is None:
            _draw_segments(ax, trace, colours, max_detections)
        elif what == "attention":
            for name, att in trace.attention.items():
                colour, width = BRANCH_STYLE.get(name, ("grey", 1.0))
                ax.plot(trace.seconds, att, color=colour, lw=width, label=name)
            if trace.attention:
                ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            else:
                ax.text(0.5, 0.5, "the head has no attention", ha="center", va="center", transform=ax.transAxes)
            ax.set_ylim(-0.05, 1.05)
        elif what in trace.cas:
            values = trace.cas[what]
            for k, cls in enumerate(trace.class_names):
                ax.plot(trace.seconds, values[:, k], color=colours(k % 10), lw=1.3, label=cls)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            top = float(np.nanmax(values)) if values.size else 1.0
            ax.set_ylim(-0.02 * max(top, 1e-6), 1.1 * max(top, 1e-6))
        else:
            ax.text(0.5, 0.5, "not available (memory bank not ready, or the head alone)", ha="center",
                    va="center", transform=ax.transAxes, fontsize=9, color="grey")
            ax.set_yticks([])
        ax.set_xlim(0, end)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(trace.title, fontsize=11)
    return fig


def _draw_segments(ax: Any, trace: VideoTrace, colours: Any, max_detections: int) -> None:
    """Ground truth on the top row, then one row per detection (best first), its score written beside it."""
    shown = trace.detections[:max_detections]
    rows = len(shown)
    for (s, e), k in zip(trace.segments, trace.segment_classes):
        ax.barh(rows + 0.5, e - s, left=s, height=0.8, color=colours(k % 10) if k >= 0 else "grey")
    for j, (k, score, s, e) in enumerate(shown):
        y = rows - 1 - j
        ax.barh(y, e - s, left=s, height=0.7, color=colours(k % 10), alpha=0.75, edgecolor="black", lw=0.4)
        ax.text(e, y, f" {score:.2f}", va="center", fontsize=6)
    ax.set_yticks([rows + 0.5] + ([rows - 1, 0] if rows > 1 else [0] * rows),
                  ["ground truth"] + (["best detection", f"#{rows}"] if rows > 1 else ["detection"] * rows))
    ax.set_ylim(-0.6, rows + 1.1)
    handles = [ax.bar(0, 0, color=colours(k % 10), label=c) for k, c in enumerate(trace.class_names)]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def curves_figure(records: Sequence[dict[str, Any]], *, title: str = "training curves") -> Any:
    """Loss terms, AVG mAP and classification mAP of every branch per evaluation epoch (``metrics.jsonl``
    records); returns the ``Figure`` with axes titled "loss terms", "detection mAP AVG (%)", "classification mAP
    (%)"."""
    plt = require_matplotlib()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    epochs = [r["epoch"] for r in records]
    ax = axes[0]
    terms = sorted({name for r in records for name in r.get("losses", {})})
    for name in terms:
        xs = [r["epoch"] for r in records if name in r.get("losses", {})]
        ax.plot(xs, [r["losses"][name] for r in records if name in r.get("losses", {})], marker=".", label=name)
    if any(r.get("train_loss") is not None for r in records):
        ax.plot(epochs, [r.get("train_loss") for r in records], "k--", lw=1, label="total")
    ax.set_title("loss terms")
    for ax, key, label in ((axes[1], "avg", "detection mAP AVG (%)"), (axes[2], "cmap", "classification mAP (%)")):
        for name, (colour, width) in BRANCH_STYLE.items():
            points = [(r["epoch"], r["branches"][name][key]) for r in records if (r["branches"].get(name) or {})]
            if points:
                ax.plot(*zip(*points), color=colour, lw=width, marker=".", label=name)
        ax.set_title(label)
    ready = [r["epoch"] for r in records if r.get("memory_ready")]
    for ax in axes:
        if ready:
            ax.axvline(ready[0], color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if ready:
        axes[1].annotate("memory bank ready", (ready[0], 0.02), xycoords=("data", "axes fraction"), fontsize=7,
                         color="grey")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------- run -> traces
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


def trace_videos(model: Any, dataset: Any, *, names: Sequence[str] | None = None, num_videos: int = 4,
                 device: Any = "cpu", title: str = "", batch_size: int = 16) -> list[VideoTrace]:
    """Traces of the videos ``names``, or of the ``num_videos`` videos where the teacher's CAS differs most from
    the main branch's (mean |teacher - main| over the video's ground-truth classes; main vs intra before the
    memory bank is ready; the first videos for the head alone)."""
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
    settings = model.traits.settings
    detections = localize(
        [videos[i].name for i in chosen], [fused[0][i] for i in chosen], [fused[1][i] for i in chosen],
        None if fused[2] is None else [fused[2][i] for i in chosen], settings, list(dataset.class_names),
        snippets_per_second=dataset.snippets_per_second,
        score_cas=None if fused[3] is None else [fused[3][i] for i in chosen],
    )["results"]
    traces = []
    for i in chosen:
        video = videos[i]
        classes = [int(c) for c in np.flatnonzero(np.asarray(video.labels) > 0)] or [int(np.argmax(fused[0][i]))]
        shown = tuple(dataset.class_names[c] for c in classes)
        length = len(fused[1][i])
        seconds = (np.arange(length) + 0.5) / float(dataset.snippets_per_second)
        seg_classes = np.array([classes.index(int(c)) if int(c) in classes else -1 for c in video.segment_labels],
                               dtype=np.int64)
        dets = tuple((shown.index(d["label"]), float(d["score"]), *map(float, d["segment"]))
                     for d in sorted(detections[video.name], key=lambda d: -d["score"]) if d["label"] in shown)
        traces.append(VideoTrace(
            name=video.name, seconds=seconds, class_names=shown,
            segments=np.asarray(video.segments, dtype=np.float64).reshape(-1, 2), segment_classes=seg_classes,
            cas={name: out[1][i][:, classes] for name, out in branches.items()},
            attention={name: out[2][i] for name, out in branches.items() if out[2] is not None},
            detections=dets, title=f"{video.name} ({', '.join(shown)}){' - ' + title if title else ''}",
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


def plot_run(*, run: str | os.PathLike[str] | None = None, checkpoint: str | os.PathLike[str] | None = None,
             videos: Sequence[str] | None = None, num_videos: int = 4, out: str | os.PathLike[str] | None = None,
             split: str = "test", device: str = "cpu", dpi: int = 110) -> list[Path]:
    """Write ``video_<name>.png`` for the chosen videos and ``curves.png`` (when the run has ``metrics.jsonl``) to
    ``out`` (default: ``<run folder>/plots``); returns the paths written.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        CheckpointError, DataError, ConfigError: no checkpoint, unknown video, unreadable metrics file.
    """
    plt = require_matplotlib()
    from .checkpoint import load_checkpoint
    from .config import from_mapping
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
    title = f"{variant}, epoch {data['epoch']} ({path.name})"
    traces = trace_videos(model, dataset, names=videos, num_videos=num_videos, device=device, title=title)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for trace in traces:
        fig = video_figure(trace)
        file = target / f"video_{_safe(trace.name)}.png"
        fig.savefig(file, dpi=dpi)
        plt.close(fig)
        written.append(file)
    metrics = folder / "metrics.jsonl"
    if metrics.is_file():
        fig = curves_figure(read_metrics(metrics), title=f"{variant}: {folder}")
        file = target / "curves.png"
        fig.savefig(file, dpi=dpi)
        plt.close(fig)
        written.append(file)
    return written
