"""Detection mAP: the official ActivityNet protocol and the snippet-grid protocols of RSKP and W-TALC.

Matching is done for all classes, videos and tIoU thresholds at once. A prediction can only ever take a ground-truth
(GT) instance of its own (class, video) group, so the greedy of the official code decomposes into independent
groups; the sweep below walks the k-th ranked prediction of *every* group in one vectorised step (k = 0, 1, ...),
so its Python loop runs over the largest group size, never over predictions, GT instances or thresholds.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import attrs
import numpy as np

from ..errors import DataError
from ._io import GroundTruth, Predictions, load_ambiguous, load_ground_truth, load_predictions

#: THUMOS14 thresholds as exact decimals (np.linspace, not a float arange: evaluation.md 3.4, pitfall 6).
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


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative integer keys (numpy radix-sorts 16-bit integers: about 10x faster)."""
    if keys.size and 0 <= keys.min() and keys.max() < 65536:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    return np.argsort(keys, kind="stable")


def _segment_ranges(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For segments of the given lengths: (segment id, offset inside the segment) of every element."""
    owner = np.repeat(np.arange(len(counts)), counts)
    offset = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, offset


def _group_pairs(key_a: np.ndarray, key_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (i, j) with key_a[i] == key_b[j], grouped by i, with j in its original order.

    Returns:
        (pair_i, pair_j, counts) where counts[i] is the number of pairs of i.
    """
    order = _stable_order(key_b)
    sorted_b = key_b[order]
    lo = np.searchsorted(sorted_b, key_a, side="left")
    counts = np.searchsorted(sorted_b, key_a, side="right") - lo
    pair_i, offset = _segment_ranges(counts)
    return pair_i, order[lo[pair_i] + offset], counts


def segment_iou(ps: np.ndarray, pe: np.ndarray, gs: np.ndarray, ge: np.ndarray) -> np.ndarray:
    """Continuous tIoU, element-wise, with the official operation order (evaluation.md 2.1).

    union = (GT length) + (prediction length) - intersection; 0/0 gives NaN, as in the official code.
    """
    inter = (np.minimum(pe, ge) - np.maximum(ps, gs)).clip(0)
    union = (ge - gs) + (pe - ps) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def snippet_iou(ps: np.ndarray, pe: np.ndarray, gs: np.ndarray, ge: np.ndarray) -> np.ndarray:
    """IoU of the snippet sets {ps..pe-1} and {gs..ge-1} (integer-valued inputs; evaluation.md 2.2); 0 if both empty."""
    inter = np.maximum(0.0, np.minimum(pe, ge) - np.maximum(ps, gs))
    union = np.maximum(0.0, pe - ps) + np.maximum(0.0, ge - gs) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _ambiguous_mask(
    pred: Predictions, ps: np.ndarray, pe: np.ndarray, ambiguous: Mapping[str, Any], to_unit: Any
) -> np.ndarray:
    """True for predictions that share a positive-length part (on the grid: a snippet) with an ambiguous segment."""
    index = {name: i for i, name in enumerate(pred.videos)}
    vids, segs = [], []
    for name, seg in ambiguous.items():
        if name in index:
            seg = np.asarray(seg, dtype=np.float64).reshape(-1, 2)
            vids.append(np.full(len(seg), index[name]))
            segs.append(seg)
    touched = np.zeros(len(ps), dtype=bool)
    if not vids:
        return touched
    amb_video = np.concatenate(vids)
    amb = to_unit(np.concatenate(segs))
    pair_p, pair_a, _ = _group_pairs(pred.video, amb_video)
    inter = np.minimum(pe[pair_p], amb[pair_a, 1]) - np.maximum(ps[pair_p], amb[pair_a, 0])
    touched[pair_p[inter > 0]] = True
    return touched


def _rank(scores: np.ndarray, keep: np.ndarray, protocol: str, order: str) -> np.ndarray:
    """Ranked indices (best first) of one class's predictions, given in file order; dropped ones left out.

    official: ActivityNet reverses numpy's default ascending argsort; W-TALC sorts the negated scores after the
    ambiguous filter; RSKP sorts the negated scores, filters, and sorts the negated scores again (its
    ``getActLoc`` then ``getLocMAP``). stable: descending score, ties in file order.
    """
    if order == "stable":
        kept = np.flatnonzero(keep)
        return kept[np.argsort(-scores[kept], kind="stable")]
    if protocol == "activitynet":
        kept = np.flatnonzero(keep)
        return kept[np.argsort(scores[kept])[::-1]]
    if protocol == "wtalc":
        kept = np.flatnonzero(keep)
        return kept[np.argsort(-scores[kept])]
    first = np.argsort(-scores)
    first = first[keep[first]]
    return first[np.argsort(-scores[first])]


def _pack(real: np.ndarray, imag: np.ndarray) -> np.ndarray:
    """Complex array with the given parts (``real + 1j * imag`` would turn an infinite imag into a NaN real)."""
    out = np.empty(len(real), dtype=np.complex128)
    out.real, out.imag = real, imag
    return out


def _candidate_pairs(
    group: np.ndarray, gt_group: np.ndarray, ps: np.ndarray, pe: np.ndarray, gs: np.ndarray, ge: np.ndarray,
    thr_min: float, continuous: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, GT) pairs of the same group that may reach ``thr_min``: a superset of the matchable pairs.

    A positive IoU needs overlap. With the GT of each group sorted by start, the overlapping GT of a regular
    prediction (end > start) lie between the first GT whose running maximum end exceeds the prediction's start and
    the last GT starting before its end: two ``searchsorted`` on (group, value) keys (complex numbers compare
    lexicographically). The window is exact when a group's GT do not nest. With the continuous IoU, the official
    0/0 = NaN quirk matches segments whose lengths sum to 0 wherever they are, so zero/negative-length predictions
    and every prediction of a group with a negative-length GT meet all GT of their group. On the snippet grid such
    segments have IoU 0.
    """
    if thr_min <= 0:  # every pair of a group reaches the threshold
        pair_p, pair_g, _ = _group_pairs(group, gt_group)
        return pair_p, pair_g
    full = np.zeros(len(group), dtype=bool)
    if continuous:  # 0/0 = NaN needs GT length + prediction length = 0 with no overlap
        full = (pe <= ps) | np.isin(group, gt_group[ge < gs])
    order = np.lexsort((gs, gt_group))  # GT sorted by (group, start)
    sorted_group = gt_group[order].astype(np.float64)
    starts = _pack(sorted_group, gs[order])  # (group, start), sorted
    reach = np.maximum.accumulate(_pack(sorted_group, ge[order])) if len(order) else starts  # running max end
    idx = np.flatnonzero(~full & (pe > ps))
    idx = idx[_stable_order(group[idx])]  # queries by group: searchsorted is faster on sorted keys
    key = group[idx].astype(np.float64)
    lo = np.searchsorted(reach, _pack(key, ps[idx]), side="right")  # first GT of the group ending after start
    hi = np.maximum(np.searchsorted(starts, _pack(key, pe[idx]), side="left"), lo)  # ... starting before end
    owner, offset = _segment_ranges(hi - lo)
    pair_p, pair_g = [idx[owner]], [order[lo[owner] + offset]]
    if full.any():
        sub = np.flatnonzero(full)
        fp, fg, _ = _group_pairs(group[sub], gt_group)
        pair_p.append(sub[fp])
        pair_g.append(fg)
    return np.concatenate(pair_p), np.concatenate(pair_g)


def _levels(pred_id: np.ndarray, gt_id: np.ndarray, count: int) -> np.ndarray:
    """Dependency depth of each prediction: 1 + the depth of the latest better-ranked prediction sharing a GT.

    Predictions of equal depth share no candidate GT, and everything a prediction depends on has a smaller depth,
    so the greedy can run depth by depth with all predictions of a depth at once.

    Args:
        pred_id: (N,) compact prediction id (= rank order) of each candidate pair.
        gt_id: (N,) its GT.
        count: number of predictions.
    """
    order = _stable_order(gt_id)  # pairs come sorted by prediction: this sorts by (GT, prediction)
    g, p = gt_id[order], pred_id[order]
    chained = g[1:] == g[:-1]
    src, dst = p[:-1][chained], p[1:][chained]  # consecutive predictions (in rank order) sharing a GT
    level = np.zeros(count, dtype=np.int64)
    while src.size:  # one pass per depth of the longest chain
        new = level.copy()
        np.maximum.at(new, dst, level[src] + 1)
        if np.array_equal(new, level):
            break
        level = new
    return level


def _match(
    group: np.ndarray,
    gt_group: np.ndarray,
    continuous: bool,
    ps: np.ndarray,
    pe: np.ndarray,
    gs: np.ndarray,
    ge: np.ndarray,
    thresholds: np.ndarray,
    rule: str,
) -> np.ndarray:
    """Greedy matching of ranked predictions to GT, per (class, video) group and threshold.

    Each prediction, in rank order, takes the first GT of its group in its preference list that is not yet taken
    at that threshold and whose IoU is >= the threshold (or NaN: the official 0/0 quirk).

    Args:
        group: (P,) group key of each prediction, predictions in rank order (within a group, earlier = better).
        gt_group: (G,) group key of each GT instance, in GT order.
        continuous: continuous tIoU (segment_iou) or snippet-set IoU (snippet_iou).
        ps, pe: (P,) prediction bounds; gs, ge: (G,) GT bounds.
        thresholds: (n,) tIoU thresholds.
        rule: preference list: "official" (reversed default argsort of the prediction's tIoU row, as the
            ActivityNet code), "best" (descending IoU, ties to the first listed GT: RSKP and the stable order),
            "first" (GT order: W-TALC's first-fit).

    Returns:
        (n, P) bool, True where the prediction is a true positive.
    """
    iou_fn = segment_iou if continuous else snippet_iou
    n_thr, n_pred = len(thresholds), len(group)
    tp = np.zeros((n_thr, n_pred), dtype=bool)
    thr_min = float(thresholds.min())
    pair_p, pair_g = _candidate_pairs(group, gt_group, ps, pe, gs, ge, thr_min, continuous)
    iou = iou_fn(ps[pair_p], pe[pair_p], gs[pair_g], ge[pair_g])
    nan = np.isnan(iou)
    keep = (iou >= thr_min) | nan  # pairs that can match at some threshold
    cp, cg, ci = pair_p[keep], pair_g[keep], iou[keep]
    if cp.size == 0:
        return tp
    key = np.where(np.isnan(ci), -np.inf, -ci)  # NaN first, then descending IoU
    if rule == "first":
        order = np.argsort(_pack(cp, cg), kind="stable")  # complex numbers sort by (real, imag): (prediction, GT)
    else:
        order = np.argsort(_pack(cp, key), kind="stable")  # (prediction, NaN first then descending IoU)
        if rule == "best" and ((cp[order][1:] == cp[order][:-1]) & (key[order][1:] == key[order][:-1])).any():
            order = np.lexsort((cg, key, cp))  # equal IoU: the first listed GT first
    cp, cg, ci, key = cp[order], cg[order], ci[order], key[order]
    if rule == "official":
        tie = (cp[1:] == cp[:-1]) & (key[1:] == key[:-1])
        if tie.any():  # rare: reproduce the official order of tied GT exactly, row by row
            by_group = np.argsort(gt_group, kind="stable")
            sorted_group = gt_group[by_group]
            for p in np.unique(cp[1:][tie]):
                lo, hi = np.searchsorted(sorted_group, [group[p], group[p] + 1])
                row_gt = by_group[lo:hi]  # every GT of the group, in GT order: the official tIoU row
                row = iou_fn(ps[p], pe[p], gs[row_gt], ge[row_gt])
                row_order = np.argsort(row)[::-1]  # the official per-prediction sort
                row_order = row_order[(row[row_order] >= thr_min) | np.isnan(row[row_order])]
                a, b = np.searchsorted(cp, [p, p + 1])
                cg[a:b], ci[a:b] = row_gt[row_order], row[row_order]
    preds, first_pair, n_cand = np.unique(cp, return_index=True, return_counts=True)
    compact = np.repeat(np.arange(len(preds)), n_cand)
    level = _levels(compact, cg, len(preds))
    sweep = _stable_order(level)  # predictions ordered by depth, then rank (preds is sorted)
    owner, offset = _segment_ranges(n_cand[sweep])
    pairs = first_pair[sweep][owner] + offset  # candidate pairs in sweep order
    pair_gt, pair_iou, pair_nan = cg[pairs], ci[pairs], np.isnan(ci[pairs])
    seg_start = np.cumsum(n_cand[sweep]) - n_cand[sweep]  # first pair of each prediction (sweep order)
    bounds = np.searchsorted(level[sweep], np.arange(level.max() + 2))
    taken = np.zeros((n_thr, gt_group.size), dtype=bool)
    thr = thresholds[:, None]
    for k in range(len(bounds) - 1):  # one iteration per dependency depth
        a, b = bounds[k], bounds[k + 1]
        pa = seg_start[a]
        pb = seg_start[b] if b < len(seg_start) else pairs.size
        g = pair_gt[pa:pb]
        eligible = ((pair_iou[pa:pb] >= thr) | pair_nan[pa:pb]) & ~taken[:, g]  # (n, pairs of this depth)
        pos = np.where(eligible, np.arange(pb - pa), pb - pa)
        first = np.minimum.reduceat(pos, seg_start[a:b] - pa, axis=1)  # (n, predictions of this depth)
        ti, pi = np.nonzero(first < pb - pa)
        taken[ti, g[first[ti, pi]]] = True
        tp[ti, preds[sweep[a + pi]]] = True
    return tp


def _average_precision(
    tp: np.ndarray, sizes: np.ndarray, npos: np.ndarray, interpolated: bool
) -> tuple[np.ndarray, np.ndarray]:
    """AP and final recall of every class at once (evaluation.md 3.3, 4.5).

    Args:
        tp: (n, P) true positives, classes one after the other (``sizes`` columns each), each in rank order.
        sizes: (C,) predictions per class.
        npos: (C,) GT instances per class.
        interpolated: area under the precision envelope with (0, 0) and (1, 0) padding (ActivityNet, RSKP), i.e.
            sum over the true positives of max(precision at this or any later rank) / npos; otherwise the mean
            precision at the true positives over npos (W-TALC).

    Returns:
        (n, C) AP and (n, C) recall; 0 for a class without predictions.
    """
    n, n_cls = tp.shape[0], len(sizes)
    ap, recall = np.zeros((n, n_cls)), np.zeros((n, n_cls))
    starts = np.cumsum(sizes) - sizes
    for c in np.flatnonzero(sizes):  # a loop over classes: each step is vectorised over ranks and thresholds
        block = tp[:, starts[c]:starts[c] + sizes[c]]
        hits = np.cumsum(block, axis=1, dtype=np.float64)
        precision = hits / np.arange(1, sizes[c] + 1)
        if interpolated:
            precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # the envelope
        ap[:, c] = np.sum(precision * block, axis=1) / npos[c]
        recall[:, c] = hits[:, -1] / npos[c]
    return ap, recall


def _thresholds(tiou_thresholds: Any) -> np.ndarray:
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

    Protocols (evaluation.md 1-5):

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
    thr = _thresholds(tiou_thresholds)
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
        keep &= ~_ambiguous_mask(pred, ps, pe, amb, to_unit)

    present = np.flatnonzero(present)
    by_class = present[_stable_order(pred.label[present])]  # file order inside each class
    bounds = np.searchsorted(pred.label[by_class], np.arange(n_cls + 1))
    ranked = [by_class[lo:hi][_rank(pred.score[by_class[lo:hi]], keep[by_class[lo:hi]], protocol, order)]
              for lo, hi in zip(bounds[:-1], bounds[1:])]
    sizes = np.array([len(r) for r in ranked])
    ranked = np.concatenate(ranked) if ranked else np.zeros(0, dtype=np.int64)
    rule = {"activitynet": "official" if order == "official" else "best", "rskp": "best", "wtalc": "first"}[protocol]
    tp = _match(
        pred.label[ranked] * n_vid + pred.video[ranked], gt.label * n_vid + gt.video,
        not grid, ps[ranked], pe[ranked], gs, ge, thr, rule,
    )
    npos = np.bincount(gt.label, minlength=n_cls)
    ap, recall = _average_precision(tp, sizes, npos, interpolated=protocol != "wtalc")
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
