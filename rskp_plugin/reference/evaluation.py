"""Straightforward per-prediction implementations of the evaluation protocols (test and benchmark reference).

Written from docs/evaluation.md (sections 2-4) as plain loops, one prediction and one GT instance at a time, the way
the official codes are structured; kept independent of ``rskp_plugin.evaluation`` on purpose.
"""

from __future__ import annotations

import numpy as np


def _rows(gt_obj, pred_obj, subset):
    gt = []
    for vid, rec in gt_obj["database"].items():
        if subset is not None and rec.get("subset") != subset:
            continue
        for ann in rec["annotations"]:
            gt.append((vid, ann["label"], float(ann["segment"][0]), float(ann["segment"][1])))
    preds = []
    for vid, dets in pred_obj["results"].items():
        for d in dets:
            preds.append((vid, d["label"], float(d["segment"][0]), float(d["segment"][1]), float(d["score"])))
    classes = list(dict.fromkeys(g[1] for g in gt))
    unknown = {p[1] for p in preds} - set(classes)
    if unknown:
        raise KeyError(sorted(unknown)[0])  # as the official loader's activity_index lookup
    return gt, preds, classes


def _tiou(ps, pe, gs, ge):
    inter = max(0.0, min(pe, ge) - max(ps, gs))
    union = (ge - gs) + (pe - ps) - inter
    if union == 0:
        return float("nan") if inter == 0 else float("inf")
    return inter / union


def _interpolated_ap(prec, rec):
    mprec = [0.0] + list(prec) + [0.0]
    mrec = [0.0] + list(rec) + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return float(sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]))


def activitynet_ap(gt_obj, pred_obj, thresholds, subset=None, stable=False):
    """(n_thr, C) AP and class list, following the official ANETdetection step by step."""
    gt, preds, classes = _rows(gt_obj, pred_obj, subset)
    ap = np.zeros((len(thresholds), len(classes)))
    for ci, cls in enumerate(classes):
        gts = [g for g in gt if g[1] == cls]
        ps = [p for p in preds if p[1] == cls]
        if not ps:
            continue
        by_video = {}  # the official code groups the GT by video once (groupby + get_group)
        for j, g in enumerate(gts):
            by_video.setdefault(g[0], []).append(j)
        scores = np.array([p[4] for p in ps])
        order = np.argsort(-scores, kind="stable") if stable else scores.argsort()[::-1]
        lock = -np.ones((len(thresholds), len(gts)))
        tp = np.zeros((len(thresholds), len(ps)))
        fp = np.zeros((len(thresholds), len(ps)))
        for rank, pi in enumerate(order):
            vid, _, s, e, _ = ps[pi]
            mine = by_video.get(vid, [])
            if not mine:
                fp[:, rank] = 1
                continue
            tiou = np.array([_tiou(s, e, gts[j][2], gts[j][3]) for j in mine])
            if stable:
                key = np.where(np.isnan(tiou), -np.inf, -tiou)
                sorted_idx = np.argsort(key, kind="stable")
            else:
                sorted_idx = tiou.argsort()[::-1]
            for t, thr in enumerate(thresholds):
                for jdx in sorted_idx:
                    if tiou[jdx] < thr:
                        fp[t, rank] = 1
                        break
                    if lock[t, mine[jdx]] >= 0:
                        continue
                    tp[t, rank] = 1
                    lock[t, mine[jdx]] = rank
                    break
                if fp[t, rank] == 0 and tp[t, rank] == 0:
                    fp[t, rank] = 1
        tpc, fpc = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
        for t in range(len(thresholds)):
            ap[t, ci] = _interpolated_ap(tpc[t] / (tpc[t] + fpc[t]), tpc[t] / len(gts))
    return ap, classes


def grid_ap(gt_obj, pred_obj, thresholds, protocol, f=25 / 16, ambiguous=None, subset=None):
    """(n_thr, C) AP (classes sorted), and whether a class lacks predictions: RSKP/W-TALC detectionMAP loops."""
    gt, preds, classes = _rows(gt_obj, pred_obj, subset)
    classes = sorted(classes)
    gt_videos = {g[0] for g in gt}
    preds = [p for p in preds if p[0] in gt_videos]
    amb = {}
    for vid, segs in (ambiguous or {}).items():
        amb[vid] = [set(range(int(round(a * f)), int(round(b * f)))) for a, b in segs]

    def touches(p):
        pd = set(range(int(round(p[2] * f)), int(round(p[3] * f))))
        return any(len(pd & a) > 0 for a in amb.get(p[0], []))

    ap = np.zeros((len(thresholds), len(classes)))
    missing = False
    for ci, cls in enumerate(classes):
        ps = [p for p in preds if p[1] == cls]
        scores = np.array([p[4] for p in ps])
        if protocol == "rskp":
            ps = [ps[i] for i in np.argsort(-scores)] if ps else []
            ps = [p for p in ps if not touches(p)]
            ps = [ps[i] for i in np.argsort(-np.array([p[4] for p in ps]))] if ps else []
        else:
            ps = [p for p in ps if not touches(p)]
            ps = [ps[i] for i in np.argsort(-np.array([p[4] for p in ps]))] if ps else []
        if not ps:
            missing = True
            continue
        for t, th in enumerate(thresholds):
            remaining = [g for g in gt if g[1] == cls]
            npos = len(remaining)
            tp = []
            for vid, _, s, e, _ in ps:
                pset = set(range(int(round(s * f)), int(round(e * f))))
                best, best_j = 0.0, None
                for j, g in enumerate(remaining):
                    if g[0] != vid:
                        continue
                    gset = set(range(int(round(g[2] * f)), int(round(g[3] * f))))
                    union = len(gset | pset)
                    iou = len(gset & pset) / union if union else 0.0
                    if iou >= th:
                        if protocol == "wtalc":
                            best_j = j
                            break
                        if best_j is None or iou > best:
                            best, best_j = iou, j
                if best_j is not None:
                    del remaining[best_j]
                tp.append(float(best_j is not None))
            tp = np.array(tp)
            tpc, fpc = np.cumsum(tp), np.cumsum(1 - tp)
            if tp.sum() == 0:
                continue
            prec = tpc / (tpc + fpc)
            if protocol == "wtalc":
                ap[t, ci] = np.sum(prec * tp) / npos
            else:
                ap[t, ci] = _interpolated_ap(prec, tpc / npos)
    return ap, classes, missing
