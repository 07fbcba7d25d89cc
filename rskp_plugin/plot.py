"""``rskp plot``'s figures (matplotlib, Agg): the paper's Fig. 4/6 for one video, and a run's training curves.

Per video, one figure on one time axis (seconds): the ground truth and every detection scoring at least the
threshold, at the height of its score, with its class (a class the video does not hold is marked "not in GT"), the
threshold as a dashed line; the CAS of the main, intra- and inter-video branches and of the distillation teacher
(pseudo-labels) for the video's classes, all on one y-scale; the attention of each branch; the ground truth shaded
everywhere. The inter branch and the teacher read the memory bank for the video's ground-truth classes, as the
diagnostics do (``engine.diagnostics``). A new video without ground truth (``rskp plot --predictions``) shows its
detections and, given the model, its fused CAS. Per run, ``curves.png``: the loss terms of every epoch
(``metrics.csv``), and AVG and classification mAP of every branch per evaluation epoch (``metrics.jsonl``).
``rskp_plugin.plot_sources`` builds the traces from a run or a predictions file.

matplotlib is optional (``pip install 'rskp-plugin[plot]'``) and imported only here, lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import attrs
import numpy as np

from .errors import MissingDependencyError

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
        class_names: the K classes whose CAS is shown (the video's ground-truth classes, else the detected ones).
        segments: (N, 2) ground-truth instances in seconds; segment_classes: (N,) their index into class_names
            (-1 for an instance of a class not shown). Empty for a video without ground truth.
        cas: branch name -> (T, K) CAS of the shown classes ("main", "intra", "inter", "teacher", or "fused").
        attention: branch name -> (T,) attention, where the head has one.
        detections: (class name, score, start s, end s) of every detection scoring at least ``threshold``, of any
            class: a class outside ``class_names`` is a detection of a class the video does not hold.
        threshold: the lowest score drawn (the dashed line of the detection panel).
        title: figure title.
        ground_truth: False for a new video (``rskp plot --predictions``): nothing is marked as a wrong class.
    """

    name: str
    seconds: np.ndarray
    class_names: tuple[str, ...]
    segments: np.ndarray
    segment_classes: np.ndarray
    cas: dict[str, np.ndarray]
    attention: dict[str, np.ndarray]
    detections: tuple[tuple[str, float, float, float], ...]
    title: str
    threshold: float = 0.0
    ground_truth: bool = True


#: The CAS panels of a video figure, in order (those a trace has; "fused" for a model's prediction alone).
CAS_PANELS = ("fused", "main", "intra", "inter", "teacher")


def _cas_title(name: str) -> str:
    return (f"{name} CAS" + (" (memory of the video's GT classes)" if name == "inter" else "")
            + (" = pseudo-labels of the distillation" if name == "teacher" else ""))


def video_figure(trace: VideoTrace) -> Any:
    """The Fig. 4/6-style figure of one video; returns the matplotlib ``Figure`` (axes titled by panel).

    The detection panel draws every detection of ``trace.detections`` at the height of its score with its class
    name (a class the video's ground truth does not hold is marked "not in GT"), the threshold as a dashed line
    and the ground truth on top; every CAS panel shares one y-scale.
    """
    plt = require_matplotlib()
    if "fused" in trace.cas or not trace.ground_truth:  # a model's prediction alone (a new video), or nothing
        names = [n for n in CAS_PANELS if n in trace.cas]
    else:
        names = [n for n in CAS_PANELS if n != "fused"]
    panels = [("ground truth (top) and detections (height = score)" if trace.ground_truth else
               "detections (height = score; no ground truth)", None)]
    panels += [(_cas_title(name), name) for name in names]
    if trace.attention or trace.ground_truth:
        panels.append(("attention", "attention"))
    heights = [2.2] + [1.0] * (len(panels) - 1)
    height = 1.5 * sum(heights) + 1.0  # inches
    fig, grid = plt.subplots(len(panels), 1, figsize=(12, height), sharex=True, squeeze=False,
                             gridspec_kw={"hspace": 0.6, "height_ratios": heights})
    axes = list(grid[:, 0])
    fig.subplots_adjust(left=0.1, right=0.85, top=1.0 - 0.75 / height, bottom=0.6 / height)
    colour = _class_colours(trace)
    end = float(trace.seconds[-1] + (trace.seconds[1] - trace.seconds[0] if len(trace.seconds) > 1 else 1.0))
    end = max([end] + [e for _, _, _, e in trace.detections])
    tops = [float(np.nanmax(v)) for v in trace.cas.values() if v.size]
    top = max(max(tops, default=1.0), 1e-6)  # one y-scale for every CAS panel
    for ax, (title, what) in zip(axes, panels):
        ax.set_title(title, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        for (s, e), k in zip(trace.segments, trace.segment_classes):  # ground truth shaded in every panel
            ax.axvspan(s, e, color=colour(trace.class_names[k]) if k >= 0 else "grey", alpha=0.12, lw=0)
        if what is None:
            _draw_detections(ax, trace, colour)
        elif what == "attention":
            for name, att in trace.attention.items():
                style, width = BRANCH_STYLE.get(name, ("grey", 1.0))
                ax.plot(trace.seconds, att, color=style, lw=width, label=name)
            if trace.attention:
                ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            else:
                ax.text(0.5, 0.5, "the head has no attention", ha="center", va="center", transform=ax.transAxes)
            ax.set_ylim(-0.05, 1.05)
        elif what in trace.cas:
            values = trace.cas[what]
            for k, cls in enumerate(trace.class_names):
                ax.plot(trace.seconds, values[:, k], color=colour(cls), lw=1.3, label=cls)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            ax.set_ylim(-0.02 * top, 1.1 * top)
        else:
            ax.text(0.5, 0.5, "not available (memory bank not ready, or the head alone)", ha="center",
                    va="center", transform=ax.transAxes, fontsize=9, color="grey")
            ax.set_yticks([])
        ax.set_xlim(0, end)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(trace.title, fontsize=11)
    return fig


def _class_colours(trace: VideoTrace) -> Any:
    """Class name -> colour: the shown classes first, then the other detected classes."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    order = list(trace.class_names) + sorted({d[0] for d in trace.detections} - set(trace.class_names))
    return lambda name: cmap(order.index(name) % 10) if name in order else "grey"


def _draw_detections(ax: Any, trace: VideoTrace, colour: Any) -> None:
    """Every detection as a bar at the height of its score, labelled with its class and score; the threshold as a
    dashed line; the ground truth as bars above the best score, labelled with their class."""
    scores = [score for _, score, _, _ in trace.detections]
    low = min(scores + [trace.threshold, 0.0])
    high = max(scores + [trace.threshold + 1e-3])
    span = high - low
    gt_row = high + 0.18 * span
    for (s, e), k in zip(trace.segments, trace.segment_classes):
        name = trace.class_names[k] if k >= 0 else "other class"
        ax.barh(gt_row, e - s, left=s, height=0.1 * span, color=colour(name) if k >= 0 else "grey")
        ax.text(s, gt_row + 0.07 * span, name, fontsize=6, va="bottom")
    known = set(trace.class_names)
    for label, score, s, e in sorted(trace.detections, key=lambda d: d[1]):
        wrong = trace.ground_truth and label not in known
        ax.barh(score, e - s, left=s, height=0.035 * span, color=colour(label), alpha=0.8,
                edgecolor="red" if wrong else "black", lw=1.0 if wrong else 0.4, hatch="//" if wrong else None)
        ax.text(s, score + 0.02 * span, f"{label} {score:.2f}" + (" (not in GT)" if wrong else ""), fontsize=6,
                va="bottom", color="red" if wrong else "black")
    ax.axhline(trace.threshold, color="red", ls="--", lw=1)
    ax.text(1.0, trace.threshold, f" threshold {trace.threshold:g}", transform=ax.get_yaxis_transform(), fontsize=7,
            va="center", color="red")
    if not trace.detections:
        ax.text(0.5, 0.5, f"no detection scores {trace.threshold:g} or more", ha="center", va="center",
                transform=ax.transAxes, fontsize=9, color="grey")
    if len(trace.segments):
        ax.text(0.0, gt_row, "ground truth ", transform=ax.get_yaxis_transform(), fontsize=7, ha="right",
                va="center")
    ax.set_ylim(low - 0.05 * span, gt_row + 0.2 * span)
    ax.set_ylabel("score", fontsize=8)


def read_epoch_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-epoch entries of a run's ``metrics.csv`` (``engine.loggers``): ``epoch``, ``train_loss`` and
    ``losses`` (the ``loss/<term>`` columns), numbers where the row has them."""
    import csv

    def number(text: str) -> float | None:
        try:
            return float(text)
        except (TypeError, ValueError):
            return None

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        if number(row.get("epoch", "")) is None:
            continue
        losses = {k[len("loss/"):]: number(v) for k, v in row.items()
                  if k.startswith("loss/") and number(v) is not None}
        out.append({"epoch": int(float(row["epoch"])), "train_loss": number(row.get("train_loss", "")),
                    "losses": losses})
    return out


def curves_figure(records: Sequence[dict[str, Any]], *, title: str = "training curves",
                  epochs: Sequence[dict[str, Any]] | None = None) -> Any:
    """Loss terms, AVG mAP and classification mAP of every branch (``metrics.jsonl`` records, one per evaluation);
    with ``epochs`` (``read_epoch_log``: one entry per epoch) the losses are drawn for every epoch. Returns the
    ``Figure`` with axes titled "loss terms", "detection mAP AVG (%)", "classification mAP (%)"."""
    plt = require_matplotlib()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    losses = list(epochs) if epochs else list(records)
    marker = None if epochs else "."
    terms = sorted({name for r in losses for name in r.get("losses", {})})
    for name in terms:
        points = [(r["epoch"], r["losses"][name]) for r in losses if r.get("losses", {}).get(name) is not None]
        ax.plot(*zip(*points), marker=marker, label=name)
    totals = [(r["epoch"], r["train_loss"]) for r in losses if r.get("train_loss") is not None]
    if totals:
        ax.plot(*zip(*totals), "k--", lw=1, label="total")
    ax.set_title("loss terms")
    ax.set_xlabel("epoch" + (" (every epoch)" if epochs else ""))
    for ax, key, label in ((axes[1], "avg", "detection mAP AVG (%)"), (axes[2], "cmap", "classification mAP (%)")):
        for name, (colour, width) in BRANCH_STYLE.items():
            points = [(r["epoch"], r["branches"][name][key]) for r in records if (r["branches"].get(name) or {})]
            if points:
                ax.plot(*zip(*points), color=colour, lw=width, marker=".", label=name)
        heldout = [(r["epoch"], r["heldout"][key]) for r in records if r.get("heldout")]
        if heldout:
            ax.plot(*zip(*heldout), color="tab:orange", ls="--", marker="x", label="held-out (fused)")
        ax.set_title(label)
        ax.set_xlabel("evaluation epoch")
    ready = [r["epoch"] for r in records if r.get("memory_ready")]
    for ax in axes:
        if ready:
            ax.axvline(ready[0], color="grey", ls=":", lw=1)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if ready:
        axes[1].annotate("memory bank ready", (ready[0], 0.02), xycoords=("data", "axes fraction"), fontsize=7,
                         color="grey")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
