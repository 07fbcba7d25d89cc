"""Detection and classification mAP: hand-computed cases, agreement with the loop reference (ties included),
hypothesis properties, bad input and the ``rskp evaluate`` command."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rskp_plugin.reference.evaluation import activitynet_ap, grid_ap
from rskp_plugin.cli import main
from rskp_plugin.errors import DataError, RSKPError
from rskp_plugin.evaluation import (
    PROTOCOLS,
    THUMOS_TIOU,
    DetectionResult,
    EvaluationWarning,
    class_taxonomy,
    classification_map,
    detection_map,
    load_ambiguous,
    load_wtalc_ground_truth,
    parse_tiou,
    result_table,
    segment_iou,
    snippet_iou,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "thumos14reduced-annotations"
THR = np.linspace(0.1, 0.7, 7)
# random_case draws segments whose noisy bounds may cross: tests comparing with the official code score them as it
# does (compat=True), and its warning is expected there.
OFFICIAL = pytest.mark.filterwarnings("ignore::rskp_plugin.evaluation.EvaluationWarning")


def gt_obj(annotations: dict[str, list[tuple[float, float, str]]], subset: str = "test") -> dict:
    return {"database": {v: {"subset": subset, "annotations": [{"segment": [s, e], "label": lab}
                                                            for s, e, lab in anns]}
                         for v, anns in annotations.items()}}


def pred_obj(results: dict[str, list[tuple[float, float, str, float]]]) -> dict:
    return {"version": "v", "external_data": {},
            "results": {v: [{"segment": [s, e], "label": lab, "score": sc} for s, e, lab, sc in dets]
                        for v, dets in results.items()}}


def random_case(seed: int, *, n_videos=6, n_classes=4, grid=None, tie_levels=None, n_pred=None):
    """Random GT and predictions: duplicates, zero lengths, videos without GT or outside the subset, ties."""
    rng = np.random.default_rng(seed)
    classes = [f"c{i}" for i in range(n_classes)]
    db = {}
    for v in range(n_videos):
        anns = []
        for _ in range(rng.integers(0, 6)):
            s = rng.uniform(0, 50)
            length = rng.choice([0.0, rng.uniform(0.2, 1.5), rng.uniform(1, 15)], p=[0.05, 0.35, 0.6])
            if grid:
                s, length = round(s / grid) * grid, round(length / grid) * grid
            anns.append({"segment": [float(s), float(s + length)], "label": classes[rng.integers(n_classes)]})
        db[f"v{v}"] = {"subset": "test" if rng.random() < 0.85 else "train", "annotations": anns}
    flat = [(v, a) for v, r in db.items() for a in r["annotations"]]
    labels = {a["label"] for _, a in flat}
    results: dict[str, list] = {}
    for _ in range(int(n_pred if n_pred is not None else rng.integers(0, 60))):
        if flat and rng.random() < 0.6:  # near a GT instance
            v, a = flat[rng.integers(len(flat))]
            s, e = a["segment"]
            length = max(e - s, 0.5)
            s, e = s + rng.normal(0, 0.3 * length), e + rng.normal(0, 0.3 * length)
            label = a["label"] if rng.random() < 0.8 else classes[rng.integers(n_classes)]
            if rng.random() < 0.1:
                s, e = a["segment"]  # exact duplicate of the GT
        else:  # anywhere, also on videos without GT
            v, s = f"v{rng.integers(n_videos + 2)}", rng.uniform(0, 50)
            e, label = s + rng.uniform(0, 10), classes[rng.integers(n_classes)]
        if grid:
            s, e = round(s / grid) * grid, round(e / grid) * grid
        if rng.random() < 0.03:
            e = s
        score = float(rng.integers(0, tie_levels)) / tie_levels if tie_levels else float(rng.random())
        if label in labels:  # the official code rejects unknown labels
            results.setdefault(v, []).append({"label": label, "score": score, "segment": [float(s), float(e)]})
    return {"database": db}, {"results": results}


# --------------------------------------------------------------------------- IoU and AP by hand
def test_segment_iou_by_hand_including_the_zero_length_quirk():
    ps, pe = np.array([0.0, 2.0, 5.0, 1.0, 3.0]), np.array([4.0, 6.0, 6.0, 1.0, 3.0])
    gs, ge = np.array([2.0, 2.0, 0.0, 0.5, 9.0]), np.array([6.0, 4.0, 4.0, 2.0, 9.0])
    iou = segment_iou(ps, pe, gs, ge)
    np.testing.assert_allclose(iou[:4], [2 / 6, 2 / 4, 0.0, 0.0])
    assert np.isnan(iou[4])  # 0/0: both zero length, the official code matches it at every threshold


def test_snippet_iou_counts_snippets():
    iou = snippet_iou(np.array([0.0, 3.0, 2.0]), np.array([5.0, 4.0, 2.0]), np.array([2.0, 3.0, 2.0]),
                      np.array([8.0, 3.0, 2.0]))
    np.testing.assert_allclose(iou, [3 / 8, 0.0, 0.0])  # {0..4} vs {2..7}; empty GT; both empty -> 0


def test_interpolated_and_non_interpolated_ap_by_hand():
    gt = gt_obj({"a": [(0, 10, "x"), (20, 30, "x")]})
    # ranks: FP (score 0.9), TP (0.8), TP (0.7)
    pred = pred_obj({"a": [(40, 50, "x", 0.9), (0, 10, "x", 0.8), (20, 30, "x", 0.7)]})
    an = detection_map(gt, pred, [0.5])
    assert an.map[0] == pytest.approx((2 / 3 + 2 / 3) / 2)  # envelope: max(1/2, 2/3) at recall 1/2
    grid_gt = gt_obj({"a": [(0, 6.4, "x"), (19.2, 32, "x")]})
    grid_pred = pred_obj({"a": [(38.4, 51.2, "x", 0.9), (0, 6.4, "x", 0.8), (19.2, 32, "x", 0.7)]})
    assert detection_map(grid_gt, grid_pred, [0.5], protocol="rskp").map[0] == pytest.approx(2 / 3)
    assert detection_map(grid_gt, grid_pred, [0.5], protocol="wtalc").map[0] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_best_iou_matching_versus_wtalc_first_fit():
    # On the snippet grid: g_a = [2, 12) is listed first, g_b = [0, 10). p0 = [1, 10) (score 0.9) has IoU 8/11 with
    # g_a and 9/10 with g_b; p1 = [2, 12) is a copy of g_a (IoU 8/12 with g_b).
    gt = gt_obj({"a": [(1.28, 7.68, "x"), (0.0, 6.4, "x")]})
    pred = pred_obj({"a": [(0.64, 6.4, "x", 0.9), (1.28, 7.68, "x", 0.8)]})
    # Best IoU (ActivityNet, RSKP): p0 takes g_b, p1 takes g_a -> AP 1 at 0.7.
    assert detection_map(gt, pred, [0.7]).map[0] == pytest.approx(1.0)
    assert detection_map(gt, pred, [0.7], protocol="rskp").map[0] == pytest.approx(1.0)
    # First fit (W-TALC): p0 takes g_a (first listed with IoU >= 0.7), p1's only other GT has 8/12 < 0.7 -> FP.
    assert detection_map(gt, pred, [0.7], protocol="wtalc").map[0] == pytest.approx(0.5)


def test_activitynet_falls_back_to_the_next_best_unmatched_gt():
    # p0 = g0 exactly takes g0; p1 overlaps g0 best (taken) and g1 at IoU 4.5/8 -> TP at 0.5 (VOC would say FP).
    gt = gt_obj({"a": [(0.0, 6.0, "x"), (2.0, 8.0, "x")]})
    pred = pred_obj({"a": [(0.0, 6.0, "x", 0.9), (0.0, 6.5, "x", 0.8)]})
    assert detection_map(gt, pred, [0.5]).map[0] == pytest.approx(1.0)
    assert detection_map(gt, pred, [0.9]).map[0] == pytest.approx(0.5)


def test_class_without_predictions():
    gt = gt_obj({"a": [(0, 6.4, "x"), (10, 16, "y")]})
    pred = pred_obj({"a": [(0, 6.4, "x", 0.9)]})
    an = detection_map(gt, pred, THR)
    np.testing.assert_allclose(an.map, 0.5)  # y gets AP 0
    assert an.missing_classes == ("y",)
    rskp = detection_map(gt, pred, THR, protocol="rskp")
    np.testing.assert_allclose(rskp.map, 0.0)  # the RSKP/W-TALC quirk: the whole mAP is 0
    np.testing.assert_allclose(detection_map(gt, pred, THR, protocol="rskp", zero_map_if_class_missing=False).map, 0.5)


def test_ambiguous_filter_and_video_set_of_the_grid_protocols():
    gt = gt_obj({"a": [(0, 6.4, "x")], "b": []})
    pred = pred_obj({"a": [(0, 6.4, "x", 0.5), (12.8, 19.2, "x", 0.9)], "b": [(0, 6.4, "x", 0.95)]})
    # Without the filter the FP on a (0.9) ranks first; video b has no GT: a FP for ActivityNet, ignored on the grid.
    assert detection_map(gt, pred, [0.5]).map[0] == pytest.approx(1 / 3)
    assert detection_map(gt, pred, [0.5], protocol="rskp").map[0] == pytest.approx(1 / 2)
    amb = {"a": np.array([[18.5, 25.0]])}  # rounds to [29, 39): touches snippet 29 of [20, 30)
    assert detection_map(gt, pred, [0.5], protocol="rskp", ambiguous=amb).map[0] == pytest.approx(1.0)
    assert detection_map(gt, pred, [0.5], protocol="rskp", ambiguous={"a": [[19.2, 25.0]]}).map[0] == pytest.approx(
        1 / 2)  # [30, 39) does not touch [20, 30)


# --------------------------------------------------------------------------- agreement with the reference
@OFFICIAL
@pytest.mark.parametrize("order", ["official", "stable"])
def test_activitynet_agrees_with_reference_including_ties(order):
    worst = 0.0
    for seed in range(120):
        grid = [None, 0.64, 1.0, 0.5][seed % 4]
        ties = [None, 3, 2, 1][(seed // 4) % 4]
        gt, pred = random_case(seed, grid=grid, tie_levels=ties)
        subset = "test" if seed % 3 == 0 else None
        try:
            ref, classes = activitynet_ap(gt, pred, THR, subset=subset, stable=order == "stable")
        except KeyError:
            continue  # a label only in the other subset: the official code fails, ours leaves it out (tested below)
        if not classes:
            continue
        got = detection_map(gt, pred, THR, subset=subset, order=order, compat=True)
        ap = got.per_class_ap[:, [got.class_names.index(c) for c in classes]]
        worst = max(worst, float(np.abs(ap - ref).max()))
        np.testing.assert_allclose(got.map, ref.mean(axis=1), rtol=0, atol=1e-9)
    assert worst <= 1e-9


@OFFICIAL
def test_activitynet_heavy_ties_official_order_differs_from_stable_and_matches_reference():
    thr = np.linspace(0.5, 0.95, 10)
    gap = 0.0
    for seed in range(8):
        gt, pred = random_case(1000 + seed, n_videos=4, n_classes=2, grid=1.0, tie_levels=1, n_pred=150)
        ref, classes = activitynet_ap(gt, pred, thr)
        got = detection_map(gt, pred, thr, compat=True)
        np.testing.assert_allclose(got.per_class_ap[:, [got.class_names.index(c) for c in classes]], ref, atol=1e-9)
        stable = detection_map(gt, pred, thr, order="stable", compat=True)
        gap = max(gap, float(np.abs(stable.per_class_ap - got.per_class_ap).max()))
    assert gap > 0.01  # all scores tie: the tie rule matters, so reproducing it is not vacuous


@OFFICIAL
@pytest.mark.parametrize("protocol", ["rskp", "wtalc"])
def test_grid_protocols_agree_with_reference(protocol):
    amb = {"v1": [[3.0, 6.0]], "v2": [[10.0, 11.3], [0.0, 1.0]]}
    for seed in range(80):
        gt, pred = random_case(seed, grid=[None, 0.64][seed % 2], tie_levels=[None, 3][(seed // 2) % 2])
        ref, classes, missing = grid_ap(gt, pred, THR, protocol, ambiguous=amb)
        if not classes:
            continue
        got = detection_map(gt, pred, THR, protocol=protocol, ambiguous=amb, compat=True)
        assert list(got.class_names) == classes
        np.testing.assert_allclose(got.per_class_ap, ref, rtol=0, atol=1e-9)
        assert bool(got.missing_classes) == missing


# --------------------------------------------------------------------------- properties
segments = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 200), st.integers(1, 40), st.integers(0, 2)),
                    min_size=1, max_size=25)


def _unique(items):
    seen, out = set(), []
    for v, s, length, c in items:
        if (v, s, length, c) not in seen:
            seen.add((v, s, length, c))
            out.append((v, s, length, c))
    return out


@settings(max_examples=40, derandomize=True, deadline=None)
@given(segments, st.sampled_from(["activitynet", "rskp", "wtalc"]))
def test_predictions_equal_to_ground_truth_give_map_one(items, protocol):
    items = _unique(items)
    f = 25 / 16
    anns = {f"v{v}": [] for v, *_ in items}
    dets = {f"v{v}": [] for v, *_ in items}
    for i, (v, s, length, c) in enumerate(items):  # on the snippet grid, so the grid protocols see them intact
        anns[f"v{v}"].append((s / f, (s + length) / f, f"c{c}"))
        dets[f"v{v}"].append((s / f, (s + length) / f, f"c{c}", 1.0 - i / 1000))
    result = detection_map(gt_obj(anns), pred_obj(dets), THR, protocol=protocol)
    np.testing.assert_allclose(result.map, 1.0)


@OFFICIAL
@settings(max_examples=30, derandomize=True, deadline=None)
@given(st.integers(0, 10_000), st.floats(0, 60), st.floats(0, 20), st.sampled_from(["activitynet", "rskp", "wtalc"]))
def test_a_lowest_scored_extra_prediction_never_raises_ap_at_full_recall(seed, start, length, protocol):
    gt, pred = random_case(seed, n_pred=30)
    copies = 0
    for v, rec in gt["database"].items():  # exact copies of every GT (distinct scores) to reach recall 1
        for a in rec["annotations"]:
            copies += 1
            pred["results"].setdefault(v, []).append(
                {"label": a["label"], "score": 0.5 + 1e-6 * copies, "segment": a["segment"]})
    before = detection_map(gt, pred, THR, protocol=protocol, zero_map_if_class_missing=False, compat=True)
    if not before.class_names:
        return
    if protocol == "activitynet":
        assert (before.per_class_recall == 1).any()  # the premise is met, so the check below is not vacuous
    label = before.class_names[seed % len(before.class_names)]
    video = next(iter(gt["database"]))
    pred["results"].setdefault(video, []).append({"label": label, "score": -1.0, "segment": [start, start + length]})
    after = detection_map(gt, pred, THR, protocol=protocol, zero_map_if_class_missing=False, compat=True)
    c = before.class_names.index(label)
    full = before.per_class_recall[:, c] == 1
    assert (after.per_class_ap[full, c] <= before.per_class_ap[full, c]).all()


@OFFICIAL
@settings(max_examples=30, derandomize=True, deadline=None)
@given(st.integers(0, 10_000), st.randoms(use_true_random=False), st.sampled_from(["activitynet", "rskp", "wtalc"]))
def test_without_ties_map_does_not_depend_on_video_order(seed, rnd, protocol):
    gt, pred = random_case(seed)
    videos = list(gt["database"].items())
    results = list(pred["results"].items())
    rnd.shuffle(videos)
    rnd.shuffle(results)
    base = detection_map(gt, pred, THR, protocol=protocol, compat=True)
    shuffled = detection_map({"database": dict(videos)}, {"results": dict(results)}, THR, protocol=protocol,
                             compat=True)
    np.testing.assert_allclose(shuffled.map, base.map, atol=1e-12)


# (video, class, start, length, score level) on a coarse grid: equal scores, equal tIoUs, nested and duplicate
# segments are common, the cases where the vectorised matching and the per-prediction loop could part.
tied = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 12), st.integers(1, 6),
                          st.integers(0, 2)), min_size=1, max_size=40)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(tied, tied, st.sampled_from(["official", "stable"]))
def test_activitynet_agrees_with_reference_on_tied_scores_and_tious(gt_items, pred_items, order):
    anns: dict[str, list] = {f"v{v}": [] for v in range(3)}
    for v, c, s, length, _ in gt_items:
        anns[f"v{v}"].append((float(s), float(s + length), f"c{c}"))
    classes = {lab for a in anns.values() for *_, lab in a}
    dets: dict[str, list] = {}
    for v, c, s, length, level in pred_items:
        if f"c{c}" in classes:
            dets.setdefault(f"v{v}", []).append((float(s), float(s + length), f"c{c}", level / 2))
    gt, pred = gt_obj(anns), pred_obj(dets)
    ref, names = activitynet_ap(gt, pred, THR, stable=order == "stable")
    got = detection_map(gt, pred, THR, order=order)
    np.testing.assert_allclose(got.per_class_ap[:, [got.class_names.index(c) for c in names]], ref, rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- classification mAP
def test_classification_map_by_hand_and_against_a_loop():
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.3, 0.6], [0.1, 0.2]])
    labels = np.array([[0, 1], [1, 0], [1, 1], [0, 0]])
    # class 0 ranking: neg, pos, pos -> (1/2 + 2/3) / 2; class 1: pos(0.7 is video 1: neg) -> ranks 0.7 neg,
    # 0.6 pos, 0.2 neg, 0.1 pos -> (1/2 + 2/4) / 2
    expected = ((1 / 2 + 2 / 3) / 2 + (1 / 2 + 2 / 4) / 2) / 2
    assert classification_map(scores, labels) == pytest.approx(expected)
    interp = ((2 / 3 + 2 / 3) / 2 + (1 / 2 + 1 / 2) / 2) / 2
    assert classification_map(scores, labels, interpolated=True) == pytest.approx(interp)
    rng = np.random.default_rng(0)
    s, y = rng.random((50, 7)), rng.random((50, 7)) < 0.3
    loop = []
    for c in range(7):
        order = np.argsort(-s[:, c])
        hits, ap = 0, 0.0
        for k, i in enumerate(order, start=1):
            if y[i, c]:
                hits += 1
                ap += hits / k
        loop.append(ap / y[:, c].sum())
    assert classification_map(s, y) == pytest.approx(np.mean(loop), abs=1e-12)


def test_classification_map_rejects_classes_without_positives():
    with pytest.raises(DataError, match="no positive video"):
        classification_map(np.ones((3, 2)), np.array([[1, 0], [1, 0], [0, 0]]))
    assert classification_map(np.array([[0.9, 0], [0.1, 0]]), np.array([[1, 0], [0, 0]]), skip_empty=True) == 1.0


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_give_clear_data_errors(tmp_path):
    gt = gt_obj({"video_1": [(0, 5, "x")]})
    with pytest.raises(DataError, match="missing.json does not exist"):
        detection_map(gt, tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": {"video_1": [')
    with pytest.raises(DataError, match="broken.json is not valid JSON"):
        detection_map(gt, broken)
    with pytest.raises(DataError, match='has no "results" object'):
        detection_map(gt, {"database": {}})
    with pytest.raises(DataError, match='has no "database" object'):
        detection_map({"results": {}}, pred_obj({}))
    with pytest.raises(DataError, match="video 'video_1' has label 'Dunk'"):
        detection_map(gt, pred_obj({"video_1": [(0, 5, "Dunk", 0.5)]}))
    with pytest.raises(DataError, match="video 'video_1' has a detection without"):
        detection_map(gt, {"results": {"video_1": [{"label": "x", "segment": [0, 1]}]}})
    with pytest.raises(DataError, match="NaN/Inf"):
        detection_map(gt, pred_obj({"video_1": [(0, 5, "x", float("nan"))]}))
    with pytest.raises(DataError, match="not \\[start, end\\]"):
        detection_map(gt, {"results": {"video_1": [{"label": "x", "score": 1, "segment": [0, 1, 2]}]}})
    with pytest.raises(DataError, match="not a pair of numbers"):
        detection_map({"database": {"v": {"annotations": [{"label": "x", "segment": ["a", "b"]}]}}}, pred_obj({}))
    with pytest.raises(DataError, match="video 'v' has an annotation without"):
        detection_map({"database": {"v": {"annotations": [{"segment": [0, 1]}]}}}, pred_obj({}))
    with pytest.raises(DataError, match='no video has subset "validation"'):
        detection_map(gt, pred_obj({}), subset="validation")
    with pytest.raises(DataError, match="Unknown protocol"):
        detection_map(gt, pred_obj({}), protocol="voc")
    with pytest.raises(DataError, match="ambiguous-segment file"):
        detection_map(gt, pred_obj({}), ambiguous=str(tmp_path / "Ambiguous_test.txt"))
    bad_amb = tmp_path / "amb.txt"
    bad_amb.write_text("video_1  0.0 1.0\nvideo_2 zero one\n")
    with pytest.raises(DataError, match="amb.txt:2"):
        load_ambiguous(bad_amb)
    with pytest.raises(DataError, match="start:stop:step"):
        parse_tiou("0.1-0.7")
    assert issubclass(DataError, RSKPError)


def test_reversed_predictions_are_refused_unless_compat():
    gt = gt_obj({"a": [(10, 20, "x"), (30, 34, "x")]})
    reversed_gt = pred_obj({"a": [(20, 10, "x", 0.9), (34, 30, "x", 0.8)]})
    with pytest.raises(DataError, match=r"video 'a', detection 0: segment \[20, 10\] ends before it starts "
                                        r"\(2 such detection\(s\)\); fix the file, or pass compat=True"):
        detection_map(gt, reversed_gt)
    with pytest.raises(DataError, match=r"video 'b', detection 1: segment \[5, 4\]"):
        detection_map(gt, pred_obj({"a": [(10, 20, "x", 0.9)], "b": [(0, 1, "x", 0.5), (5, 4, "x", 0.4)]}))
    for protocol in PROTOCOLS:
        with pytest.warns(EvaluationWarning, match="ends before it starts.*scored as the official code does"):
            result = detection_map(gt, reversed_gt, THR, protocol=protocol, compat=True)
        if protocol == "activitynet":  # the official 0/0 tIoU quirk: exactly reversed GT is a perfect detection
            np.testing.assert_allclose(result.map, 1.0)
    zero_length = pred_obj({"a": [(15, 15, "x", 0.9)]})  # a zero-length detection is valid (it matches nothing)
    assert detection_map(gt, zero_length, THR).average == 0.0


def test_reversed_ground_truth_is_refused_unless_compat():
    gt = gt_obj({"a": [(10, 20, "x")], "b": [(0, 5, "x"), (9, 8, "x")]})
    pred = pred_obj({"a": [(10, 20, "x", 0.9)]})
    with pytest.raises(DataError, match=r"video 'b', annotation 1: segment \[9, 8\] ends before it starts"):
        detection_map(gt, pred)
    with pytest.warns(EvaluationWarning, match="video 'b', annotation 1"):
        assert detection_map(gt, pred, [0.5], compat=True).map[0] == pytest.approx(1 / 3)


def test_no_matching_video_id_warns_with_the_counts():
    gt = gt_obj({"video_test_0000004": [(0, 5, "x")], "video_test_0000006": [(0, 5, "x")]})
    pred = pred_obj({"4": [(0, 5, "x", 0.9)], "6": [(0, 5, "x", 0.9)], "7": [(0, 5, "x", 0.9)]})
    with pytest.warns(EvaluationWarning, match="none of its 3 predicted video ids is one of the 2 ground-truth videos "
                                               ".*e.g. '4' vs 'video_test_0000004'"):
        assert detection_map(gt, pred, THR).average == 0.0
    with warnings.catch_warnings():  # one matching video is enough: no warning
        warnings.simplefilter("error")
        detection_map(gt, pred_obj({"4": [(0, 5, "x", 0.9)], "video_test_0000006": [(0, 5, "x", 0.9)]}), THR)
        detection_map(gt, pred_obj({}), THR)  # no prediction at all is not a mismatch


def test_classes_come_from_the_whole_dataset():
    """A prediction of a class of the dataset without GT in the evaluated videos is left out, not refused."""
    gt = {"database": {**gt_obj({"t1": [(0, 10, "x")], "t2": [(5, 9, "z")]})["database"],
                       **gt_obj({"v1": [(0, 10, "y")]}, subset="validation")["database"]}}
    scored = [(0, 10, "x", 0.9), (30, 40, "x", 0.5)]
    base = detection_map(gt, pred_obj({"t1": scored}), THR, subset="test")
    extra = detection_map(gt, pred_obj({"t1": scored + [(0, 10, "y", 0.95)]}), THR, subset="test")
    assert (base.num_unscored, extra.num_unscored) == (0, 1)  # "y" only has GT in the other subset
    np.testing.assert_array_equal(extra.per_class_ap, base.per_class_ap)
    assert extra.class_names == ("x", "z")  # the mAP still averages over the evaluated classes
    with pytest.raises(DataError, match="label 'w', which is not a class of .*3 classes: x, z, y.*\"taxonomy\""):
        detection_map(gt, pred_obj({"t1": [(0, 10, "w", 0.9)]}), THR, subset="test")
    # A ground truth of only some videos names the dataset's classes in its taxonomy (as rskp's own files do).
    small = {**gt_obj({"t1": [(0, 10, "x")]}), "taxonomy": class_taxonomy(["x", "y", "z"])}
    assert detection_map(small, pred_obj({"t1": [(0, 10, "z", 0.9)]}), THR).num_unscored == 1
    with pytest.raises(DataError, match="label 'z', which is not a class"):
        detection_map(gt_obj({"t1": [(0, 10, "x")]}), pred_obj({"t1": [(0, 10, "z", 0.9)]}), THR)


def test_wtalc_ground_truth_keeps_the_class_list_and_unpickles_only_segments_and_labels(tmp_path):
    from rskp_plugin.data import make_synthetic, write_wtalc

    train, test = make_synthetic(seed=3, feature_dim=16, num_train=2, num_test=2)
    write_wtalc(train, test, tmp_path, "Tiny")
    ann = tmp_path / "Tiny-Annotations"
    gt = load_wtalc_ground_truth(ann, "test")
    assert [n["nodeName"] for n in gt["taxonomy"] if n["parentName"] == "Root"] == list(test.class_names)
    present = {a["label"] for v in gt["database"].values() for a in v["annotations"]}
    absent = next(c for c in test.class_names if c not in present)  # 2 videos never hold all 20 classes
    video = next(iter(gt["database"]))
    assert detection_map(gt, pred_obj({video: [(0, 5, absent, 0.9)]}), THR).num_unscored == 1
    np.save(ann / "classlist.npy", np.array(list(test.class_names), dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="classlist.npy holds Python objects.*unpickles only segments.npy and labels"):
        load_wtalc_ground_truth(ann, "test")


# --------------------------------------------------------------------------- CLI
def test_cli_table_and_json(tmp_path, capsys):
    gt = gt_obj({"a": [(0, 10, "x"), (20, 30, "x")]})
    pred = pred_obj({"a": [(40, 50, "x", 0.9), (0, 10, "x", 0.8), (20, 30, "x", 0.7)]})
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    args = ["evaluate", "--ground-truth", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "pred.json")]
    assert main(args + ["--tiou", "0.5,0.9", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tiou"] == [0.5, 0.9]
    assert out["map_percent"] == pytest.approx([200 / 3, 200 / 3])  # percent, as results.json of train and bench
    assert out["avg_map_percent"] == pytest.approx(200 / 3)
    assert out["per_class_ap_percent"] == {"x": pytest.approx([200 / 3, 200 / 3])}
    assert main(args + ["--per-class"]) == 0
    table = capsys.readouterr().out
    assert "66.67" in table and "@0.7" in table and "0.1:0.7" in table
    assert main(["evaluate", "--ground-truth", str(tmp_path / "gt.json"), "--predictions",
                 str(tmp_path / "nope.json")]) == 2
    assert "nope.json does not exist" in " ".join(capsys.readouterr().err.split())
    mixed = {"database": {**gt["database"], "b": {"subset": "train", "annotations": [{"segment": [0, 5], "label": "x"}]}}}
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))
    base = ["evaluate", "--ground-truth", str(tmp_path / "mixed.json"), "--predictions", str(tmp_path / "pred.json")]
    assert main(base + ["--json"]) == 0
    captured = capsys.readouterr()
    assert "pass --subset" in " ".join(captured.err.split())
    assert json.loads(captured.out)["avg_map_percent"] < 200 / 3
    assert main(base + ["--json", "--subset", "test"]) == 0
    assert json.loads(capsys.readouterr().out)["avg_map_percent"] == pytest.approx(200 / 3)


def test_per_class_table_keeps_class_names_at_80_columns():
    from rich.console import Console

    names = ["BaseballPitch", "BasketballDunk", "VolleyballSpiking", "ThrowDiscus", "CricketBowling"]
    ap = np.full((7, len(names)), 1.0)  # "100.00": the widest number
    result = DetectionResult(
        tiou=THUMOS_TIOU, map=ap.mean(1), average=1.0, per_class_ap=ap, class_names=tuple(names),
        protocol="activitynet", num_predictions=5, num_ground_truth=5, missing_classes=(), per_class_recall=ap,
    )
    console = Console(width=80, record=True)
    console.print(result_table(result, per_class=True))
    lines = console.export_text().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    for name in names:  # whole, on one line, with all 8 numbers of its row
        row = next(line for line in lines if line.strip().startswith(name))
        assert row.split()[1:] == ["100.00"] * 8


def test_cli_compat_warnings_and_notes(tmp_path, capsys):
    gt = gt_obj({"a": [(10, 20, "x")], "b": [(0, 5, "y")]})
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    base = ["evaluate", "--ground-truth", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "pred.json"),
            "--json"]
    (tmp_path / "pred.json").write_text(json.dumps(pred_obj({"a": [(20, 10, "x", 0.9)]})))
    assert main(base) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error:") and "video 'a', detection 0" in err and "--compat" in err
    assert main(base + ["--compat"]) == 0
    captured = capsys.readouterr()
    assert "warning: " in captured.err and "ends before it starts" in " ".join(captured.err.split())
    assert json.loads(captured.out)["avg_map_percent"] == pytest.approx(50.0)  # x found (the quirk), y missed
    (tmp_path / "pred.json").write_text(json.dumps(pred_obj({"c": [(10, 20, "x", 0.9)]})))
    assert main(base) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: " in err and "none of its 1 predicted video ids is one of the 2 ground-truth videos" in err
    (tmp_path / "gt.json").write_text(json.dumps({**gt_obj({"a": [(10, 20, "x")]}),
                                                  "taxonomy": class_taxonomy(["x", "y"])}))
    (tmp_path / "pred.json").write_text(json.dumps(pred_obj({"a": [(10, 20, "x", 0.9), (10, 20, "y", 0.8)]})))
    assert main(base) == 0
    captured = capsys.readouterr()
    assert "note: 1 predictions of classes without ground truth" in " ".join(captured.err.split())
    assert json.loads(captured.out)["avg_map_percent"] == pytest.approx(100.0)


# --------------------------------------------------------------------------- real annotations
def test_real_thumos_annotations_load_and_score_themselves():
    if not DATA.is_dir():
        pytest.skip(f"{DATA} not present (real THUMOS14-reduced annotations)")
    wtalc = load_wtalc_ground_truth(DATA)
    assert len(wtalc["database"]) == 212
    assert sum(len(r["annotations"]) for r in wtalc["database"].values()) == 3358
    amb = load_ambiguous(DATA / "Ambiguous_test.txt")
    assert sum(len(v) for v in amb.values()) == 99 and len(amb) == 37
    gt = json.loads((DATA / "gt.json").read_text())
    as_pred = {"results": {
        v: [{"label": a["label"], "score": 1.0 - 1e-4 * i, "segment": [float(x) for x in a["segment"]]}
            for i, a in enumerate(r["annotations"])]
        for v, r in gt["database"].items() if r["subset"] == "test"}}
    np.testing.assert_allclose(detection_map(gt, as_pred, THR, subset="test").map, 1.0)
    # On the grid, the 17 instances that vanish cannot be matched: mAP is just below 1.
    grid = detection_map(wtalc, {"results": {v: [{**a, "score": 1.0} for a in r["annotations"]]
                                             for v, r in wtalc["database"].items()}}, THR, protocol="rskp")
    assert 0.98 < grid.average < 1.0
