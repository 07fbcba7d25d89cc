"""Localisation: runs, OIC scores, NMS and the per-head rules, against hand-computed cases and a loop reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rskp_plugin import proposals
from rskp_plugin.reference.localization import ref_localize, smooth_cas
from rskp_plugin.errors import ConfigError, ShapeError
from rskp_plugin.evaluation import detection_map
from rskp_plugin.localization import (
    Detections,
    LocalizationSettings,
    localize,
    localize_video,
    upsample_linear,
)
from rskp_plugin.proposals import grouped_nms, nms
from rskp_heads import facnet, stpn, wum

#: The localisation rules of RSKP's own code and of the official codes of the heads (each kept in its head file).
RULES = {"rskp": LocalizationSettings(), "facnet": facnet.OFFICIAL_LOCALIZATION, "wum": wum.LOCALIZATION,
         "stpn": stpn.LOCALIZATION}


def _assert_same(det: Detections, ref):
    got = list(zip(det.labels.tolist(), det.starts.tolist(), det.ends.tolist(), det.scores.tolist()))
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g[0] == r[0]
        np.testing.assert_allclose(g[1:], r[1:], rtol=0, atol=1e-9)


DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14reduced-annotations"


# --------------------------------------------------------------------------- hand-computed cases
def test_rskp_rules_on_a_hand_computed_cas():
    # One class, one threshold. Run above 0.5: snippets 2..4 (s=2, e=5, L=3).
    cas = np.array([0.1, 0.2, 0.9, 0.8, 0.7, 0.3, 0.0, 0.0, 0.0, 0.0])[:, None]
    st = LocalizationSettings(thresholds=(0.5,))
    det = localize_video(np.array([1.0]), cas, None, st, snippets_per_second=1.0)
    # inner includes index e=5: mean(0.9, 0.8, 0.7, 0.3) = 0.675
    # left flank [max(0, floor(2 - 0.75)), 2) = [1, 2) -> 0.2; right [6, min(9, floor(5 + 0.75 + 1))) = [6, 6) empty
    assert det.labels.tolist() == [0]
    assert det.scores[0] == pytest.approx(0.675 - 0.2)
    assert (det.starts[0], det.ends[0]) == (2.0, 6.0)  # stored end e + 1


def test_wum_flanks_and_video_score_term():
    cas = np.array([0.0, 0.1, 0.2, 0.9, 0.8, 0.7, 0.6, 0.1, 0.3, 0.05, 0.0, 0.0])[:, None]
    st = LocalizationSettings(thresholds=(0.5,), inner_includes_next=False, strict=False, video_score_weight=0.2,
                              nms_overlap="iou")
    det = localize_video(np.array([0.5]), cas, None, st, snippets_per_second=2.0)
    # run 3..6 (L=4): inner mean(0.9, 0.8, 0.7, 0.6) = 0.75; left [2, 3) -> 0.2; right [7, min(11, 6 + 1) + 1) = [7, 8)
    assert det.scores.tolist() == pytest.approx([0.75 - (0.2 + 0.1) / 2 + 0.2 * 0.5])
    assert (det.starts[0], det.ends[0]) == (1.5, 3.5)


def test_min_length_strictness_and_class_threshold():
    cas = np.array([[0.2, 0.9], [0.2, 0.1], [0.0, 0.0], [0.2, 0.0]])
    p = np.array([0.5, 0.05])
    strict = LocalizationSettings(thresholds=(0.2,), min_length=1)
    assert localize_video(p, cas, None, strict).labels.size == 0  # 0.2 is not > 0.2; class 1 below 0.1
    loose = LocalizationSettings(thresholds=(0.2,), min_length=1, strict=False, inner_includes_next=False)
    det = localize_video(p, cas, None, loose, snippets_per_second=1.0)
    assert sorted(zip(det.starts.tolist(), det.ends.tolist())) == [(0.0, 2.0), (3.0, 4.0)]
    longer = LocalizationSettings(thresholds=(0.2,), min_length=2, strict=False, inner_includes_next=False)
    assert localize_video(p, cas, None, longer, snippets_per_second=1.0).starts.tolist() == [0.0]
    fallback = LocalizationSettings(thresholds=(0.05,), class_threshold=0.9, fallback_argmax=True, min_length=1)
    assert set(localize_video(p, cas, None, fallback).labels.tolist()) == {0}


def test_nms_suppressed_length_versus_iou():
    starts, ends, scores = np.array([0.0, 0.0, 8.0]), np.array([9.0, 3.0, 12.0]), np.array([0.9, 0.8, 0.7])
    # Suppressed-length overlap of [0, 3] under [0, 9]: (3 - 0 + 1) / (3 - 0 + 1) = 1 > 0.5 -> suppressed.
    # [8, 12]: intersection 9 - 8 + 1 = 2, own length 5 -> 0.4, kept.
    assert nms(starts, ends, scores, threshold=0.5, overlap="suppressed_length").tolist() == [0, 2]
    # True IoU of [0, 3] and [0, 9] with +1 lengths: 4 / 10 = 0.4 < 0.5 -> kept.
    assert nms(starts, ends, scores, threshold=0.5, overlap="iou").tolist() == [0, 1, 2]
    assert nms(starts, ends, scores, threshold=0.4, overlap="iou").tolist() == [0, 2]  # >= suppresses
    assert nms(starts, ends, scores, threshold=0.4, overlap="iou", inclusive=False).tolist() == [0, 1, 2]


def test_upsample_matches_linear_interpolation_and_extrapolates():
    rng = np.random.default_rng(0)
    x = rng.random((7, 3))
    up = upsample_linear(x, 4)
    assert up.shape == (28, 3)
    pos = np.arange(0, 7, 0.25)
    inside = pos <= 6
    for c in range(3):
        np.testing.assert_allclose(up[inside, c], np.interp(pos[inside], np.arange(7), x[:, c]), atol=1e-12)
    np.testing.assert_allclose(up[-1], x[6] + 0.75 * (x[6] - x[5]), atol=1e-12)  # linear extrapolation



@pytest.mark.parametrize("scale", [2, 3, 7, 24])
def test_upsample_broadcast_path_equals_the_gathered_formula_bit_for_bit(scale):
    """The usual grid takes a broadcast path; it must give the bits of slope[lo] * frac + x[lo], float32 CAS
    (promoted by the float64 grid) and float64 alike, for every length the arange grid produces."""
    rng = np.random.default_rng(scale)
    for length in (2, 3, 5, 17, 100, 341, 1000):
        for x in (rng.random((length, 4)).astype(np.float32), rng.random(length), rng.random((length, 2, 3))):
            pos = np.arange(0, length, 1 / scale)
            lo = np.minimum(np.floor(pos).astype(np.int64), length - 2)
            frac = (pos - lo).reshape((-1,) + (1,) * (x.ndim - 1))
            want = (x[lo + 1] - x[lo]) * frac + x[lo]
            got = upsample_linear(x, scale)
            assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)

# --------------------------------------------------------------------------- agreement with the loop reference
@pytest.mark.parametrize("head", ["rskp", "facnet", "wum", "stpn"])
def test_presets_agree_with_loop_reference(head):
    rng = np.random.default_rng({"rskp": 1, "facnet": 2, "wum": 3, "stpn": 4}[head])
    st = RULES[head]
    total = 0
    for _ in range(6):
        T, C = int(rng.integers(5, 60)), 4
        cas = smooth_cas(rng, T, C, peaky=head in ("rskp", "facnet"))
        p = rng.random(C)
        att = np.clip(rng.random(T) * 0.3 + cas.max(axis=1) * 3, 0, 1)
        score_cas = rng.random((T, C)) if head == "stpn" else None
        f = float(rng.uniform(0.5, 3))
        det = localize_video(p, cas, att, st, snippets_per_second=f, score_cas=score_cas)
        _assert_same(det, ref_localize(p, cas, att, st, f, score_cas))
        total += len(det.labels)
    assert total >= 10  # the comparison saw real detections


def test_padding_and_tensors_give_the_same_detections():
    rng = np.random.default_rng(5)
    cas = smooth_cas(rng, 40, 3)
    p = np.array([0.5, 0.2, 0.05])
    st = RULES["rskp"]
    base = localize_video(p, cas, None, st)
    padded = np.concatenate([cas, rng.random((9, 3))])
    for other in (localize_video(p, padded, None, st, num_snippets=40),
                  localize_video(torch.tensor(p), torch.tensor(cas, dtype=torch.float64), None, st)):
        for a, b in zip(base, other):
            np.testing.assert_array_equal(a, b)


def test_localize_writes_activitynet_results_that_evaluate():
    rng = np.random.default_rng(6)
    names, scores, cass, db = [], [], [], {}
    for v in range(5):
        T = 80
        cas = np.full((T, 2), 0.001)
        anns = []
        for s in rng.choice(np.arange(0, 70, 14), size=2, replace=False):
            cas[s:s + 6, v % 2] = 0.05
            anns.append({"segment": [s / 1.5625, (s + 6) / 1.5625], "label": "ab"[v % 2]})
        names.append(f"video_{v}")
        scores.append(np.array([0.9, 0.0]) if v % 2 == 0 else np.array([0.0, 0.9]))
        cass.append(cas)
        db[f"video_{v}"] = {"subset": "test", "annotations": anns}
    st = LocalizationSettings(inner_includes_next=False)  # exact ends, to compare with the ground truth
    result = localize(names, scores, cass, None, st, ["a", "b"])
    assert set(result) == {"version", "external_data", "results"}
    first = result["results"]["video_0"][0]
    assert set(first) == {"label", "score", "segment"} and isinstance(first["score"], float)
    assert detection_map({"database": db}, result).average == pytest.approx(1.0)
    assert detection_map({"database": db}, result, protocol="rskp").average == pytest.approx(1.0)


def test_localize_on_the_real_thumos_lengths_runs_fast():
    durations_file = DATA / "duration.npy"
    try:
        durations = np.load(durations_file)[:, 0]
    except FileNotFoundError:
        pytest.skip(f"{durations_file} not present; the real THUMOS14 durations are needed for this check")
    rng = np.random.default_rng(7)
    lengths = (durations[200:230] * 25 / 16).astype(int)
    cas = [smooth_cas(rng, int(n), 20) for n in lengths]
    scores = [rng.random(20) for _ in lengths]
    names, classes = [str(i) for i in range(len(lengths))], [str(c) for c in range(20)]
    out = localize(names, scores, cas, None, RULES["rskp"], classes)
    assert len(out["results"]) == len(lengths)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors():
    st = RULES["rskp"]
    with pytest.raises(ShapeError, match="cas must have shape"):
        localize_video(np.ones(3), np.ones((5, 2)), None, st)
    with pytest.raises(ShapeError, match="NaN"):
        localize_video(np.ones(2), np.full((5, 2), np.nan), None, st)
    with pytest.raises(ShapeError, match="attention is None"):
        localize_video(np.ones(2), np.ones((5, 2)), None, RULES["wum"])
    with pytest.raises(ShapeError, match="video 'b'"):
        localize(["a", "b"], [np.ones(2), np.ones(3)], [np.ones((4, 2)), np.ones((4, 2))], None, st, ["x", "y"])
    with pytest.raises(ShapeError, match="align"):
        localize(["a"], [np.ones(2), np.ones(2)], [np.ones((4, 2))], None, st, ["x", "y"])
    with pytest.raises(ConfigError, match="at least one threshold"):
        localize_video(np.ones(2), np.ones((5, 2)), None, LocalizationSettings(thresholds=()))


@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.integers(0, 60), st.integers(0, 12), st.integers(0, 4)),
                max_size=120),
       st.sampled_from(["iou", "suppressed_length"]), st.booleans(), st.sampled_from([0.2, 0.5, 0.6]))
def test_grouped_nms_one_group_at_a_time_keeps_what_all_groups_at_once_keep(rows, overlap, inclusive, threshold):
    """Few groups go one by one (``FEW_GROUPS``), many all at once on padded arrays: the same segments, in the same
    order (tied scores and zero-length segments included)."""
    rows = sorted(rows)  # by group
    group = np.array([r[0] for r in rows], dtype=np.int64)
    starts = np.array([float(r[1]) for r in rows])
    ends = starts + np.array([float(r[2]) for r in rows])
    scores = np.array([r[3] / 4 for r in rows])
    bounds = np.searchsorted(group, np.arange(13))
    kw = dict(threshold=threshold, overlap=overlap, inclusive=inclusive)
    old = proposals.FEW_GROUPS
    try:
        proposals.FEW_GROUPS = 10**6
        one_by_one = grouped_nms(starts, ends, scores, bounds, **kw)
        proposals.FEW_GROUPS = -1
        batched = grouped_nms(starts, ends, scores, bounds, **kw)
    finally:
        proposals.FEW_GROUPS = old
    assert one_by_one.tolist() == batched.tolist()
