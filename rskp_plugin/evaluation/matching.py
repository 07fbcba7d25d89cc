"""The matching and average-precision core of detection mAP, on arrays (the protocols and file formats are in
:mod:`.detection`).

Matching is done for all classes, videos and tIoU thresholds at once. A prediction can only ever take a ground-truth
(GT) instance of its own (class, video) group, so the greedy of the official code decomposes into independent
groups; the sweep below walks the k-th ranked prediction of *every* group in one vectorised step (k = 0, 1, ...),
so its Python loop runs over the largest group size, never over predictions, GT instances or thresholds.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ._io import Predictions


def stable_order(keys: np.ndarray) -> np.ndarray:
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
    order = stable_order(key_b)
    sorted_b = key_b[order]
    lo = np.searchsorted(sorted_b, key_a, side="left")
    counts = np.searchsorted(sorted_b, key_a, side="right") - lo
    pair_i, offset = _segment_ranges(counts)
    return pair_i, order[lo[pair_i] + offset], counts


def segment_iou(ps: np.ndarray, pe: np.ndarray, gs: np.ndarray, ge: np.ndarray) -> np.ndarray:
    """Continuous tIoU, element-wise, with the official operation order (docs/evaluation.md 2.1).

    union = (GT length) + (prediction length) - intersection; 0/0 gives NaN, as in the official code.
    """
    inter = (np.minimum(pe, ge) - np.maximum(ps, gs)).clip(0)
    union = (ge - gs) + (pe - ps) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def snippet_iou(ps: np.ndarray, pe: np.ndarray, gs: np.ndarray, ge: np.ndarray) -> np.ndarray:
    """IoU of the snippet sets {ps..pe-1} and {gs..ge-1} (integer inputs; docs/evaluation.md 2.2); 0 if both empty."""
    inter = np.maximum(0.0, np.minimum(pe, ge) - np.maximum(ps, gs))
    union = np.maximum(0.0, pe - ps) + np.maximum(0.0, ge - gs) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def ambiguous_mask(
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


def rank_predictions(scores: np.ndarray, keep: np.ndarray, protocol: str, order: str) -> np.ndarray:
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
    idx = idx[stable_order(group[idx])]  # queries by group: searchsorted is faster on sorted keys
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
    order = stable_order(gt_id)  # pairs come sorted by prediction: this sorts by (GT, prediction)
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


def match_predictions(
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
    sweep = stable_order(level)  # predictions ordered by depth, then rank (preds is sorted)
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


def average_precision(
    tp: np.ndarray, sizes: np.ndarray, npos: np.ndarray, interpolated: bool
) -> tuple[np.ndarray, np.ndarray]:
    """AP and final recall of every class at once (docs/evaluation.md 3.3, 4.4).

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

