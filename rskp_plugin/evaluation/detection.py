"""Detection mAP: the official ActivityNet protocol and the snippet-grid protocols of RSKP and W-TALC, from files or
loaded arrays, and its result (the matching and average-precision core is in :mod:`.matching`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import attrs
import numpy as np

from ..errors import DataError
from ._io import GroundTruth, Predictions, load_ambiguous, load_ground_truth, load_predictions
from .matching import (
    ambiguous_mask,
    average_precision,
    match_predictions,
    rank_predictions,
    stable_order,
)

#: THUMOS14 thresholds as exact decimals (np.linspace, not a float arange: docs/evaluation.md 3.4).
THUMOS_TIOU = np.linspace(0.1, 0.7, 7)
#: ActivityNet 1.3 thresholds 0.50:0.05:0.95.
ACTIVITYNET_TIOU = np.linspace(0.5, 0.95, 10)
PROTOCOLS = ("activitynet", "rskp", "wtalc")
ORDERS = ("official", "stable")


@attrs.frozen(eq=False)
class DetectionResult:
    """Detection mAP at each tIoU threshold (fractions in [0, 1]).

    Attributes:
        tiou: (n,) thresholds.
        map: (n,) mAP per threshold: mean over ``class_names`` of the per-class AP.
        average: mean of ``map`` over the thresholds.
        per_class_ap: (n, C) AP per threshold and class.
        class_names: the C evaluated classes (those with GT in the evaluated videos).
        protocol: "activitynet", "rskp" or "wtalc".
        num_predictions: predictions that took part (after the ambiguous filter and, on the snippet grid, after
            dropping videos without GT).
        num_ground_truth: GT instances.
        missing_classes: classes without any prediction (with ``zero_map_if_class_missing`` the whole mAP is 0).
        per_class_recall: (n, C) recall reached by all predictions, per threshold and class.
        subsets: the ground-truth subsets that took part (e.g. ("test",)).
        num_unscored: predictions left out because their class (a class of the dataset) has no ground truth in the
            evaluated videos; they change no class's AP.
    """

    tiou: np.ndarray
    map: np.ndarray
    average: float
    per_class_ap: np.ndarray
    class_names: tuple[str, ...]
    protocol: str
    num_predictions: int
    num_ground_truth: int
    missing_classes: tuple[str, ...]
    per_class_recall: np.ndarray
    subsets: tuple[Any, ...] = ()
    num_unscored: int = 0

    def to_dict(self) -> dict[str, Any]:
        """What ``rskp evaluate --json`` prints: ``{"tiou": [...], "map_percent": [...], "avg_map_percent": x,
        "per_class_ap_percent": {class: [AP per threshold]}, "protocol", "num_predictions", "num_ground_truth",
        "missing_classes", "num_unscored"}``. Percent, as ``results.json`` of ``rskp train`` and ``rskp-bench`` (the attributes of
        this object stay fractions)."""
        return {
            "tiou": self.tiou.tolist(),
            "map_percent": (100.0 * self.map).tolist(),
            "avg_map_percent": 100.0 * float(self.average),
            "per_class_ap_percent": {name: (100.0 * self.per_class_ap[:, c]).tolist()
                                     for c, name in enumerate(self.class_names)},
            "protocol": self.protocol,
            "num_predictions": int(self.num_predictions),
            "num_ground_truth": int(self.num_ground_truth),
            "missing_classes": list(self.missing_classes),
            "num_unscored": int(self.num_unscored),
        }


def tiou_array(tiou_thresholds: Any) -> np.ndarray:
    """``tiou_thresholds`` as a flat float64 array; a ``DataError`` if empty or not finite."""
    thr = np.asarray(tiou_thresholds, dtype=np.float64).ravel()
    if thr.size == 0 or not np.isfinite(thr).all():
        raise DataError(f"tIoU thresholds must be a non-empty list of finite numbers, got {tiou_thresholds!r}")
    return thr


def detection_map(
    ground_truth: Mapping[str, Any] | str | os.PathLike,
    predictions: Mapping[str, Any] | str | os.PathLike,
    tiou_thresholds: Any = THUMOS_TIOU,
    *,
    protocol: str = "activitynet",
    order: str = "official",
    snippets_per_second: float = 25 / 16,
    ambiguous: Mapping[str, Any] | str | os.PathLike | None = None,
    subset: str | None = None,
    zero_map_if_class_missing: bool | None = None,
    compat: bool = False,
) -> DetectionResult:
    """Detection mAP of ActivityNet-format predictions against ActivityNet-format ground truth.

    Protocols (docs/evaluation.md 1-4):

    * "activitynet": the official ``ANETdetection`` (continuous tIoU in seconds, best unmatched GT >= threshold,
      interpolated AP, a class without predictions gets AP 0). Equal to the official code to 1e-9, ties included,
      with ``order="official"``.
    * "rskp": RSKP's ``evaluation/detectionMAP.py``: GT rounded to the snippet grid (round half to even, as
      Python 3), predictions rounded to the nearest snippet, discrete IoU, best IoU among unmatched GT (ties to
      the first listed), interpolated AP; only videos with GT take part. The paper's numbers come from it.
    * "wtalc": W-TALC's ``detectionMAP.py``: as "rskp" but first-fit matching and non-interpolated AP.

    Args:
        ground_truth: ``{"database": ...}`` object or the path of its JSON file.
        predictions: ``{"results": ...}`` object or the path of its JSON file.
        tiou_thresholds: thresholds; the default is exactly 0.1, 0.2, ..., 0.7.
        protocol: see above.
        order: "official" reproduces the protocol's own (unstable) sort of tied scores and tIoUs; "stable" breaks
            score ties by file order and tIoU ties by GT order.
        snippets_per_second: the snippet grid of "rskp"/"wtalc" (25/16 for I3D at 25 fps, 16-frame snippets).
        ambiguous: video -> (k, 2) seconds, or the path of ``Ambiguous_test.txt``; predictions that share a snippet
            (in "activitynet": a positive-length part) with an ambiguous segment of their video are dropped.
        subset: evaluate only GT videos of this subset (THUMOS14 ``gt.json``: "test"); None: every video.
        zero_map_if_class_missing: the RSKP/W-TALC quirk: mAP 0 at every threshold when a class has no
            prediction. Default: on for "rskp"/"wtalc" (official behaviour), off for "activitynet".
        compat: score segments that end before they start, with an ``EvaluationWarning``, as the official code
            does: its continuous tIoU is 0/0 = NaN for a reversed segment and a segment of the same length, which
            matches at every threshold (exactly reversed ground truth scores mAP 1). By default such a prediction
            or ground-truth segment is a ``DataError`` naming its video and row.

    Predictions whose class is a class of the dataset (any subset of the ground truth, or its ``taxonomy``) but has
    no ground truth in the evaluated videos are left out (``num_unscored``): the official code would fail on them,
    and they change no class's AP. When no predicted video id is a ground-truth video, an ``EvaluationWarning``
    gives the counts (the mAP is then 0).

    Returns:
        The mAP per threshold, its average and the per-class AP (fractions, not percent).

    Raises:
        DataError: missing or malformed files, unknown labels (named with their video), segments that end before
            they start (without ``compat``), bad arguments.
    """
    if protocol not in PROTOCOLS:
        raise DataError(f'Unknown protocol "{protocol}"; use one of {", ".join(PROTOCOLS)}')
    if order not in ORDERS:
        raise DataError(f'Unknown order "{order}"; use one of {", ".join(ORDERS)}')
    thr = tiou_array(tiou_thresholds)
    gt = load_ground_truth(ground_truth, subset, compat=compat)
    pred = load_predictions(predictions, gt, compat=compat)
    return evaluate_arrays(
        gt, pred, thr, protocol=protocol, order=order, snippets_per_second=snippets_per_second,
        ambiguous=ambiguous, zero_map_if_class_missing=zero_map_if_class_missing,
    )


def evaluate_arrays(
    gt: GroundTruth,
    pred: Predictions,
    thr: np.ndarray,
    *,
    protocol: str,
    order: str,
    snippets_per_second: float,
    ambiguous: Mapping[str, Any] | str | os.PathLike | None,
    zero_map_if_class_missing: bool | None,
) -> DetectionResult:
    """:func:`detection_map` on already loaded ground truth and predictions."""
    grid = protocol != "activitynet"
    n_cls, n_vid = len(gt.class_names), len(pred.videos)
    keep = np.ones(len(pred.score), dtype=bool)
    if grid:
        f = float(snippets_per_second)
        gs, ge = np.round(gt.start * f), np.round(gt.end * f)  # round half to even, like Python 3 round()
        ps, pe = np.rint(pred.start * f), np.rint(pred.end * f)  # predictions lie on the grid already

        def to_unit(seg: np.ndarray) -> np.ndarray:
            return np.round(seg * f)

        has_gt = np.zeros(n_vid, dtype=bool)
        has_gt[gt.video] = True
        present = has_gt[pred.video]  # RSKP/W-TALC only see videos with GT: others never enter the ranking
    else:
        gs, ge, ps, pe = gt.start, gt.end, pred.start, pred.end
        present = keep

        def to_unit(seg: np.ndarray) -> np.ndarray:
            return seg

    if ambiguous is not None:
        amb = load_ambiguous(ambiguous) if isinstance(ambiguous, (str, os.PathLike)) else ambiguous
        keep &= ~ambiguous_mask(pred, ps, pe, amb, to_unit)

    present = np.flatnonzero(present)
    by_class = present[stable_order(pred.label[present])]  # file order inside each class
    bounds = np.searchsorted(pred.label[by_class], np.arange(n_cls + 1))
    ranked = [by_class[lo:hi][rank_predictions(pred.score[by_class[lo:hi]], keep[by_class[lo:hi]], protocol, order)]
              for lo, hi in zip(bounds[:-1], bounds[1:])]
    sizes = np.array([len(r) for r in ranked])
    ranked = np.concatenate(ranked) if ranked else np.zeros(0, dtype=np.int64)
    rule = {"activitynet": "official" if order == "official" else "best", "rskp": "best", "wtalc": "first"}[protocol]
    tp = match_predictions(
        pred.label[ranked] * n_vid + pred.video[ranked], gt.label * n_vid + gt.video,
        not grid, ps[ranked], pe[ranked], gs, ge, thr, rule,
    )
    npos = np.bincount(gt.label, minlength=n_cls)
    ap, recall = average_precision(tp, sizes, npos, interpolated=protocol != "wtalc")
    mean_ap = ap.mean(axis=1) if n_cls else np.zeros(len(thr))
    missing = tuple(gt.class_names[c] for c in range(n_cls) if sizes[c] == 0)
    if zero_map_if_class_missing is None:
        zero_map_if_class_missing = grid
    if zero_map_if_class_missing and missing:
        mean_ap = np.zeros(len(thr))
    if grid:  # RSKP/W-TALC list classes alphabetically
        alpha = np.argsort(np.array(gt.class_names, dtype=object)) if n_cls else np.zeros(0, dtype=np.int64)
        ap, recall, names = ap[:, alpha], recall[:, alpha], tuple(gt.class_names[i] for i in alpha)
    else:
        names = gt.class_names
    return DetectionResult(
        tiou=thr, map=mean_ap, average=float(mean_ap.mean()), per_class_ap=ap, class_names=names,
        protocol=protocol, num_predictions=int(len(ranked)), num_ground_truth=int(len(gt.label)),
        missing_classes=missing, per_class_recall=recall, subsets=gt.subsets, num_unscored=pred.num_unscored,
    )


def parse_tiou(spec: str) -> np.ndarray:
    """Thresholds from ``"start:stop:step"`` (stop included, exact decimals) or a comma list ``"0.5,0.75,0.95"``."""
    try:
        if ":" in spec:
            start, stop, step = (float(x) for x in spec.split(":"))
            if step <= 0 or stop < start:
                raise ValueError("need step > 0 and stop >= start")
            count = int(round((stop - start) / step)) + 1
            values = np.round(start + step * np.arange(count), 10)  # exact decimals, not a float arange
        else:
            values = np.array([float(x) for x in spec.split(",")])
    except ValueError as exc:
        raise DataError(f"bad tIoU thresholds {spec!r} ({exc}); use start:stop:step (0.1:0.7:0.1) or 0.5,0.75") from exc
    if values.size == 0 or (values <= 0).any() or (values > 1).any():
        raise DataError(f"tIoU thresholds {spec!r} must lie in (0, 1]")
    return values


def result_table(result: DetectionResult, *, per_class: bool = False) -> Any:
    """A rich table of the mAP per threshold (percent) and its average; with ``per_class`` one row per class."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"Detection mAP (%), {result.protocol} protocol, {result.num_predictions} predictions, "
                        f"{result.num_ground_truth} GT instances")
    avg = f"avg {result.tiou.min():g}:{result.tiou.max():g}"
    if per_class:
        # 20 THUMOS14 class names and 8 columns of numbers fit in 80 columns only without vertical rules; a name
        # too long for the terminal folds onto a second line instead of being cut.
        table.box, table.pad_edge, table.padding = box.SIMPLE_HEAD, False, (0, 0)  # columns apart by one space
        longest = max((len(n) for n in result.class_names), default=5)
        table.add_column("class", style="bold", overflow="fold", min_width=min(longest, 20))
        avg = avg.replace(" ", "\n")
    else:
        table.add_column("", style="bold")
    for t in result.tiou:
        table.add_column(f"@{t:g}", justify="right", no_wrap=True)
    table.add_column(avg, justify="right", no_wrap=True)
    if per_class:
        for c, name in enumerate(result.class_names):
            ap = result.per_class_ap[:, c]
            table.add_row(name, *(f"{100 * v:.2f}" for v in ap), f"{100 * ap.mean():.2f}")
        table.add_section()
    table.add_row("mAP", *(f"{100 * v:.2f}" for v in result.map), f"{100 * result.average:.2f}")
    if result.missing_classes:
        table.caption = f"classes without predictions: {', '.join(result.missing_classes)}"
    return table
