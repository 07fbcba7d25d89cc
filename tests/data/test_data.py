"""Loaders (W-TALC, per-video folders), records, batching: round trips and every bad-input case."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rskp_plugin.data import (
    Batch,
    DataWarning,
    VideoDataset,
    VideoRecord,
    collate,
    default_subsets,
    iterate_batches,
    load_folders,
    load_wtalc,
    random_positions,
    read_ambiguous,
    uniform_positions,
    write_wtalc,
)
from rskp_plugin.errors import DataError, RSKPError
from rskp_plugin.evaluation import load_ambiguous

CLASSES = ("Alpha", "Beta", "Gamma", "Delta")
SPS = 25 / 16


def _video(rng: np.random.Generator, name: str, *, length: int | None = None, width: int = 6) -> VideoRecord:
    length = int(rng.integers(3, 40)) if length is None else length
    duration = length / SPS
    k = int(rng.integers(0, 4))
    starts = np.round(rng.uniform(0, duration * 0.7, k), 1)
    ends = np.round(np.minimum(starts + rng.uniform(0.2, 5.0, k), duration), 1)
    ends = np.maximum(ends, starts + 0.1)
    seg_labels = rng.integers(0, len(CLASSES), k)
    labels = np.zeros(len(CLASSES), np.float32)
    labels[seg_labels] = 1
    if k == 0:
        labels[int(rng.integers(0, len(CLASSES)))] = 1
    return VideoRecord(
        name, rng.random((length, width), dtype=np.float32), labels, duration, np.stack([starts, ends], 1), seg_labels
    )


def _dataset(seed: int, subset: str, n: int, *, width: int = 6, ambiguous: bool = False) -> VideoDataset:
    rng = np.random.default_rng(seed)
    videos = [_video(rng, f"video_{subset}_{i:04d}", width=width) for i in range(n)]
    amb = {videos[0].name: np.array([[0.0, 1.4], [2.5, 3.1]])} if ambiguous else {}
    return VideoDataset("Tiny", subset, CLASSES, videos, ambiguous=amb)


@pytest.fixture()
def wtalc_dir(tmp_path: Path) -> Path:
    write_wtalc(_dataset(0, "validation", 7), _dataset(1, "test", 5, ambiguous=True), tmp_path, "Tiny")
    return tmp_path


def _ann(root: Path) -> Path:
    return root / "Tiny-Annotations"


def _edit(path: Path, row: int, value: object) -> None:
    array = np.load(path, allow_pickle=True)
    array[row] = value
    np.save(path, array, allow_pickle=True)


# ------------------------------------------------------------------------------------------------ records
def test_record_converts_dtypes_and_checks_shapes() -> None:
    rec = VideoRecord("v", np.ones((4, 3), np.float64), [1, 0], 2.5, [[0.1, 0.5]], [1])
    assert rec.features.dtype == np.float32 and rec.labels.dtype == np.float32
    assert rec.segments.dtype == np.float64 and rec.segments.shape == (1, 2)
    assert rec.segment_labels.dtype == np.int64 and rec.num_snippets == 4
    empty = VideoRecord("e", np.ones((4, 3)), [1, 0], 2.5, [], [])
    assert empty.segments.shape == (0, 2)
    with pytest.raises(RSKPError, match="features must be"):
        VideoRecord("v", np.ones(4), [1, 0], 2.5, [], [])
    with pytest.raises(RSKPError, match="2 segments but 1"):
        VideoRecord("v", np.ones((4, 3)), [1, 0], 2.5, [[0, 1], [1, 2]], [0])


def test_dataset_checks_widths_labels_and_names() -> None:
    rng = np.random.default_rng(0)
    a, b = _video(rng, "a", width=4), _video(rng, "b", width=5)
    with pytest.raises(RSKPError, match="different feature widths"):
        VideoDataset("d", "s", CLASSES, [a, b])
    with pytest.raises(RSKPError, match="labels of shape"):
        VideoDataset("d", "s", CLASSES[:3], [a])
    with pytest.raises(DataError, match="duplicate video names"):
        VideoDataset("d", "s", CLASSES, [a, a])


def test_dataset_accessors_and_ground_truth() -> None:
    ds = _dataset(3, "test", 4)
    assert len(ds) == 4 and ds[1] is ds.videos[1] and ds.num_classes == 4 and ds.feature_dim == 6
    assert ds.names == tuple(v.name for v in ds.videos) and ds.video(ds.names[2]) is ds[2]
    assert ds.snippets_per_second == SPS
    with pytest.raises(DataError, match="no video"):
        ds.video("nope")
    gt = ds.ground_truth()
    assert [n["nodeName"] for n in gt["taxonomy"] if n["parentName"] == "Root"] == list(CLASSES)  # every class
    assert isinstance(gt["version"], str)
    json.dumps(gt)  # serialisable as is
    for video in ds:
        entry = gt["database"][video.name]
        assert entry["subset"] == "test" and entry["duration"] == video.duration
        assert [a["segment"] for a in entry["annotations"]] == video.segments.tolist()
        assert [a["label"] for a in entry["annotations"]] == [CLASSES[c] for c in video.segment_labels]


def test_split_is_deterministic_disjoint_and_sized() -> None:
    ds = _dataset(5, "validation", 40)
    train, held = ds.split(0.25, seed=3)
    assert len(held) == 10 and len(train) == 30
    assert set(train.names).isdisjoint(held.names) and set(train.names) | set(held.names) == set(ds.names)
    assert held.subset == "validation:heldout" and train.subset == "validation:train"
    again = ds.split(0.25, seed=3)
    assert again[1].names == held.names
    assert ds.split(0.25, seed=4)[1].names != held.names
    assert list(held.names) == sorted(held.names, key=ds.names.index)  # dataset order kept
    # Every class seen in at least 2 videos keeps a training video.
    counts = np.sum([v.labels for v in ds], axis=0)
    train_counts = np.sum([v.labels for v in train], axis=0)
    assert np.all(train_counts[counts >= 2] >= 1)
    with pytest.raises(DataError):
        ds.split(1.0, seed=0)


@settings(max_examples=25, derandomize=True, deadline=None)
@given(n=st.integers(2, 30), fraction=st.floats(0.05, 0.95), seed=st.integers(0, 100))
def test_split_properties(n: int, fraction: float, seed: int) -> None:
    ds = _dataset(seed, "validation", n)
    train, held = ds.split(fraction, seed=seed)
    assert len(held) == min(max(round(fraction * n), 1), n - 1) and len(train) + len(held) == n
    assert set(train.names).isdisjoint(held.names)
    train_counts = np.sum([v.labels for v in train], axis=0)
    counts = np.sum([v.labels for v in ds], axis=0)
    if fraction <= 0.5:  # room to leave every class with two or more videos a training video
        strata = [int(np.argmin(np.where(v.labels > 0, counts, np.inf))) for v in ds]
        for stratum in set(strata):
            if strata.count(stratum) > 1:
                assert train_counts[stratum] >= 1


# ------------------------------------------------------------------------------------------------ W-TALC
def test_wtalc_round_trip_reads_back_identically(wtalc_dir: Path) -> None:
    train, test = _dataset(0, "validation", 7), _dataset(1, "test", 5, ambiguous=True)
    for original in (train, test):
        loaded = load_wtalc(wtalc_dir, "Tiny", original.subset)
        assert loaded.videos == original.videos
        assert loaded.class_names == original.class_names
        assert loaded.snippets_per_second == SPS
        assert loaded.skipped == ()
    assert load_wtalc(wtalc_dir, "Tiny", "test").ambiguous.keys() == test.ambiguous.keys()
    assert np.array_equal(load_wtalc(wtalc_dir, "Tiny", "test").ambiguous[test.names[0]], test.ambiguous[test.names[0]])
    assert load_wtalc(wtalc_dir, "Tiny", "validation").ambiguous == {}


def test_wtalc_files_look_like_the_real_ones(wtalc_dir: Path) -> None:
    ann = _ann(wtalc_dir)
    assert np.load(ann / "duration.npy").shape == (12, 1)
    assert np.load(ann / "videoname.npy").dtype.kind == "S" and np.load(ann / "classlist.npy").dtype.kind == "S"
    segments = np.load(ann / "segments.npy", allow_pickle=True)
    assert segments.dtype == object and all(isinstance(s, list) for s in segments)
    labels_all = np.load(ann / "labels_all.npy", allow_pickle=True)
    assert all(isinstance(x, list) and all(isinstance(c, str) for c in x) for x in labels_all)


def test_wtalc_snippet_factor_is_a_setting_not_extracted_fps(wtalc_dir: Path) -> None:
    np.save(_ann(wtalc_dir) / "extracted_fps.npy", np.full(12, 10))  # the UNT rate in the real files: ignored
    assert load_wtalc(wtalc_dir, "Tiny", "test").snippets_per_second == 25 / 16
    assert load_wtalc(wtalc_dir, "Tiny", "test", snippets_per_second=2.5).snippets_per_second == 2.5
    with pytest.raises(DataError, match="snippets_per_second"):
        load_wtalc(wtalc_dir, "Tiny", "test", snippets_per_second=0)


def test_wtalc_annotations_beside_the_features(tmp_path: Path, wtalc_dir: Path) -> None:
    ds = load_wtalc(wtalc_dir, "Tiny", "test", annotations_dir=_ann(wtalc_dir))
    assert len(ds) == 5
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in _ann(wtalc_dir).iterdir():
        (flat / f.name).write_bytes(f.read_bytes())
    (flat / "Tiny-I3D-JOINTFeatures.npy").write_bytes((wtalc_dir / "Tiny-I3D-JOINTFeatures.npy").read_bytes())
    assert load_wtalc(flat, "Tiny", "test").videos == ds.videos


def test_default_subsets() -> None:
    assert default_subsets("Thumos14reduced") == ("validation", "test")
    assert default_subsets("ActivityNet1.2") == ("training", "validation")


@pytest.mark.parametrize("stem", ["videoname", "segments", "labels_all", "duration", "classlist"])
def test_wtalc_missing_annotation_file(wtalc_dir: Path, stem: str) -> None:
    (_ann(wtalc_dir) / f"{stem}.npy").unlink()
    with pytest.raises(DataError, match=rf"missing annotation file {stem}\.npy: .*{stem}\.npy does not exist"):
        load_wtalc(wtalc_dir, "Tiny", "test")


def test_wtalc_missing_feature_file(wtalc_dir: Path) -> None:
    (wtalc_dir / "Tiny-I3D-JOINTFeatures.npy").unlink()
    with pytest.raises(DataError, match="missing feature file: .*Tiny-I3D-JOINTFeatures.npy does not exist"):
        load_wtalc(wtalc_dir, "Tiny", "test")
    with pytest.raises(DataError, match="Other-I3D-JOINTFeatures.npy"):
        load_wtalc(wtalc_dir, "Other", "test", annotations_dir=_ann(wtalc_dir))


def test_wtalc_unknown_subset_and_misaligned_files(wtalc_dir: Path) -> None:
    with pytest.raises(DataError, match="no video of subset 'training'.*'test', 'validation'"):
        load_wtalc(wtalc_dir, "Tiny", "training")
    np.save(_ann(wtalc_dir) / "duration.npy", np.ones((11, 1)))
    with pytest.raises(DataError, match="duration.npy has 11 entries but videoname.npy has 12"):
        load_wtalc(wtalc_dir, "Tiny", "test")


def test_wtalc_unreadable_file(wtalc_dir: Path) -> None:
    (_ann(wtalc_dir) / "subset.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="cannot read .*subset.npy"):
        load_wtalc(wtalc_dir, "Tiny", "test")


class _RunsCode:
    """Unpickling this object creates ``marker``: proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _object_array(*items: object) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


@pytest.mark.parametrize("stem", ["videoname", "subset", "classlist", "duration"])
def test_wtalc_pickle_in_a_plain_annotation_file_is_refused_unread(wtalc_dir: Path, tmp_path: Path, stem: str) -> None:
    marker = tmp_path / "code-ran"
    path = _ann(wtalc_dir) / f"{stem}.npy"
    size = len(np.load(path))
    np.save(path, _object_array(_RunsCode(marker), *([b"x"] * (size - 1))), allow_pickle=True)
    with pytest.raises(DataError, match=rf"{stem}\.npy holds Python objects .*could run code; rskp unpickles only the "
                                        r"feature file, segments.npy, labels.npy and labels_all.npy\. Re-save it"):
        load_wtalc(wtalc_dir, "Tiny", "test")
    assert not marker.exists()
    with open(path, "wb") as handle:  # a raw pickle named .npy (not even a .npy file)
        pickle.dump(_RunsCode(marker), handle)
    with pytest.raises(DataError, match=rf"cannot read W-TALC file .*{stem}\.npy: it is a Python pickle, which rskp "
                                        "never loads"):
        load_wtalc(wtalc_dir, "Tiny", "test")
    assert not marker.exists()


def test_wtalc_truncated_and_damaged_files(wtalc_dir: Path) -> None:
    path = _ann(wtalc_dir) / "segments.npy"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="cannot read W-TALC file .*segments.npy: it is truncated or corrupt"):
        load_wtalc(wtalc_dir, "Tiny", "test")
    path = _ann(wtalc_dir) / "duration.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(DataError, match="duration.npy: it is truncated or corrupt"):
        load_wtalc(wtalc_dir, "Tiny", "test")
    path.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': nonsense")
    with pytest.raises(DataError, match="duration.npy: its .npy header is damaged"):
        load_wtalc(wtalc_dir, "Tiny", "test")


def test_wtalc_width_is_decided_by_the_majority(wtalc_dir: Path) -> None:
    """The first test video (row 7) has an odd width: it is the bad one, not the four after it."""
    _features_edit(wtalc_dir, 7, np.ones((5, 4), np.float32))
    with pytest.raises(DataError, match="video video_test_0000: feature width 4 differs from the 6 of most videos "
                                        r"\(4 of 5\)"):
        load_wtalc(wtalc_dir, "Tiny", "test")
    with pytest.warns(DataWarning, match="skipped 1 of 5 videos: video_test_0000"):
        ds = load_wtalc(wtalc_dir, "Tiny", "test", on_error="skip")
    assert len(ds) == 4 and ds.feature_dim == 6
    with pytest.raises(DataError, match="video video_test_0001: feature width 6 differs from the feature_dim 4 asked"):
        load_wtalc(wtalc_dir, "Tiny", "test", feature_dim=4)
    with pytest.warns(DataWarning, match="skipped 4 of 5 videos"):
        assert load_wtalc(wtalc_dir, "Tiny", "test", feature_dim=4, on_error="skip").names == ("video_test_0000",)


def _features_edit(root: Path, row: int, value: object) -> None:
    _edit(root / "Tiny-I3D-JOINTFeatures.npy", row, value)


def _nan(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[1, 2] = np.nan
    return x


def _inf(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[0, 0] = np.inf
    return x


# Each case breaks test video 2 (row 7 + 2 = 9 of the files) and names what the error must say.
BAD_CASES = {
    "no features": (lambda r: _features_edit(r, 9, None), "has no features"),
    "empty features": (lambda r: _features_edit(r, 9, np.zeros((0, 6), np.float32)), "has no features"),
    "1-d features": (lambda r: _features_edit(r, 9, np.zeros(6, np.float32)), r"must be a \(T, D\) array"),
    "width": (lambda r: _features_edit(r, 9, np.ones((5, 4), np.float32)), "feature width 4 differs from the 6"),
    "nan": (
        lambda r: _features_edit(r, 9, _nan(np.load(r / "Tiny-I3D-JOINTFeatures.npy", allow_pickle=True)[9])),
        "1 NaN/Inf values in snippets \\[1\\]",
    ),
    "inf": (
        lambda r: _features_edit(r, 9, _inf(np.load(r / "Tiny-I3D-JOINTFeatures.npy", allow_pickle=True)[9])),
        "NaN/Inf",
    ),
    "unknown video label": (
        lambda r: _edit(_ann(r) / "labels_all.npy", 9, ["Alpha", "Omega"]),
        "video label \\(labels_all.npy\\) 'Omega' is not in the class list",
    ),
    "unknown segment label": (
        lambda r: (
            _edit(_ann(r) / "segments.npy", 9, [[0.5, 1.5]]),
            _edit(_ann(r) / "labels.npy", 9, ["Omega"]),
        ),
        "segment label \\(labels.npy\\) 'Omega' is not in the class list",
    ),
    "segment outside": (
        lambda r: (
            _edit(_ann(r) / "segments.npy", 9, [[0.5, 1.5], [1.0, 99.0]]),
            _edit(_ann(r) / "labels.npy", 9, ["Alpha", "Beta"]),
        ),
        "1 segment\\(s\\) end after the video's .* s, e.g. segment 1 \\[1.0, 99.0\\]",
    ),
    "malformed segment": (
        lambda r: (_edit(_ann(r) / "segments.npy", 9, [[2.0, 1.0]]), _edit(_ann(r) / "labels.npy", 9, ["Alpha"])),
        "segment 0 \\[2.0, 1.0\\] s is malformed",
    ),
    "negative start": (
        lambda r: (_edit(_ann(r) / "segments.npy", 9, [[-1.0, 1.0]]), _edit(_ann(r) / "labels.npy", 9, ["Alpha"])),
        "is malformed",
    ),
    "labels do not match segments": (
        lambda r: (_edit(_ann(r) / "segments.npy", 9, [[0.5, 1.0]]), _edit(_ann(r) / "labels.npy", 9, [])),
        "1 segments \\(segments.npy\\) but 0 labels",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_wtalc_bad_video_raises_naming_file_and_video(wtalc_dir: Path, case: str) -> None:
    breaks, message = BAD_CASES[case]
    breaks(wtalc_dir)
    with pytest.raises(DataError, match=message) as info:
        load_wtalc(wtalc_dir, "Tiny", "test")
    text = str(info.value)
    assert "video_test_0002" in text and "Tiny-I3D-JOINTFeatures.npy" in text and "Tiny-Annotations" in text
    assert "on_error" in text  # says how to go on


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_wtalc_bad_video_skipped_with_a_warning_and_counted(wtalc_dir: Path, case: str) -> None:
    breaks, message = BAD_CASES[case]
    breaks(wtalc_dir)
    with pytest.warns(DataWarning, match="skipped 1 of 5 videos: video_test_0002"):
        ds = load_wtalc(wtalc_dir, "Tiny", "test", on_error="skip")
    assert len(ds) == 4 and "video_test_0002" not in ds.names
    assert [name for name, _ in ds.skipped] == ["video_test_0002"]
    assert pytest.importorskip("re").search(message, ds.skipped[0][1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_wtalc(wtalc_dir, "Tiny", "validation", on_error="skip")) == 7  # the other subset is fine


def test_wtalc_out_of_range_keep_and_clip(wtalc_dir: Path) -> None:
    _edit(_ann(wtalc_dir) / "segments.npy", 9, [[0.5, 1.5], [1.0, 99.0], [98.0, 99.0]])
    _edit(_ann(wtalc_dir) / "labels.npy", 9, ["Alpha", "Beta", "Gamma"])
    kept = load_wtalc(wtalc_dir, "Tiny", "test", out_of_range="keep")
    assert kept.videos[2].segments.tolist() == [[0.5, 1.5], [1.0, 99.0], [98.0, 99.0]]
    with pytest.warns(DataWarning, match="clipped 2 segments"):
        clipped = load_wtalc(wtalc_dir, "Tiny", "test", out_of_range="clip")
    video = clipped.videos[2]
    assert video.segments.tolist() == [[0.5, 1.5], [1.0, video.duration]]
    assert video.segment_labels.tolist() == [0, 1]


def test_wtalc_end_within_one_snippet_of_the_duration_is_fine(wtalc_dir: Path) -> None:
    duration = float(np.load(_ann(wtalc_dir) / "duration.npy")[9, 0])
    _edit(_ann(wtalc_dir) / "segments.npy", 9, [[0.5, duration + 0.6]])
    _edit(_ann(wtalc_dir) / "labels.npy", 9, ["Alpha"])
    assert load_wtalc(wtalc_dir, "Tiny", "test").videos[2].segments[0, 1] == duration + 0.6


def test_wtalc_bad_options(wtalc_dir: Path) -> None:
    with pytest.raises(DataError, match="on_error must be one of"):
        load_wtalc(wtalc_dir, "Tiny", "test", on_error="ignore")
    with pytest.raises(DataError, match="out_of_range must be one of"):
        load_wtalc(wtalc_dir, "Tiny", "test", out_of_range="drop")


def test_write_wtalc_refuses_inconsistent_subsets(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="both subsets"):
        write_wtalc(_dataset(0, "test", 2), _dataset(1, "test", 2), tmp_path)
    with pytest.raises(DataError, match="feature widths differ"):
        write_wtalc(_dataset(0, "validation", 2, width=3), _dataset(1, "test", 2), tmp_path)


def test_write_wtalc_into_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="cannot create .*file/Tiny-Annotations"):
        write_wtalc(_dataset(0, "validation", 2), _dataset(1, "test", 2), tmp_path / "file", "Tiny")


def test_read_ambiguous_splits_on_any_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "Ambiguous_test.txt"
    path.write_text("video_test_0000278  0.0 1.4\nvideo_test_0000278\t95.7 97.2\n\nvideo_test_0000293 50.6 54.6\n")
    amb = read_ambiguous(path)
    assert amb["video_test_0000278"].tolist() == [[0.0, 1.4], [95.7, 97.2]] and len(amb) == 2
    path.write_text("video_test_0000278 abc\n")
    with pytest.raises(DataError, match="line 1"):
        read_ambiguous(path)
    path.write_text("video_test_0000278 0.0 1.4\nvideo_test_0000278 0.0 1.4 extra\n")  # as evaluation reads it
    with pytest.raises(DataError, match="line 2"):
        read_ambiguous(path)
    with pytest.raises(DataError, match=":2: expected 'video start end'"):
        load_ambiguous(path)


def test_ambiguous_file_has_one_reader(tmp_path: Path) -> None:
    """data and evaluation read Ambiguous_test.txt with the same function, so they cannot disagree."""
    assert read_ambiguous is load_ambiguous
    with pytest.raises(DataError, match="ambiguous-segment file .*nope.txt does not exist"):
        read_ambiguous(tmp_path / "nope.txt")


REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "thumos14reduced-annotations"


def test_real_thumos14_annotations_load(tmp_path: Path) -> None:
    if not REAL.is_dir():
        pytest.skip(f"real THUMOS14 annotations not found at {REAL}")
    durations = np.load(REAL / "duration.npy")[:, 0]
    features = np.empty(len(durations), dtype=object)
    for i, d in enumerate(durations):  # stand-in features of the right length
        features[i] = np.zeros((int(np.ceil(d * SPS)), 4), np.float32)
    np.save(tmp_path / "Thumos14reduced-I3D-JOINTFeatures.npy", features, allow_pickle=True)
    with pytest.raises(DataError, match="video_validation_0000364: 2 segment"):
        load_wtalc(tmp_path, annotations_dir=REAL)
    train = load_wtalc(tmp_path, subset="validation", annotations_dir=REAL, out_of_range="keep")
    test = load_wtalc(tmp_path, subset="test", annotations_dir=REAL, out_of_range="keep")
    assert (len(train), len(test)) == (200, 212)
    assert sum(len(v.segments) for v in train) == 3007 and sum(len(v.segments) for v in test) == 3358
    assert len(test.ambiguous) == 36 and train.class_names[4] == "CliffDiving"
    assert test.video("video_test_0000270").labels.sum() == 0  # empty labels_all, kept as in W-TALC
    with pytest.warns(DataWarning, match="skipped 3 of 212"):
        skipped = load_wtalc(tmp_path, subset="test", annotations_dir=REAL, on_error="skip")
    assert sorted(n for n, _ in skipped.skipped) == ["video_test_0000270", "video_test_0000814", "video_test_0001081"]
    # gt.json (per-video-folder format) names the same classes in the same order.
    assert tuple(sorted({a["label"] for e in json.loads((REAL / "gt.json").read_text())["database"].values()
                         for a in e["annotations"]})) == train.class_names


JAPANESE_VOWELS = Path(__file__).resolve().parents[3] / "shared" / "data" / "japanesevowels-tal"


@pytest.mark.parametrize("folder", [REAL, JAPANESE_VOWELS / "JapaneseVowelsTAL-Annotations"], ids=["thumos", "vowels"])
def test_real_annotation_files_need_pickle_only_where_rskp_unpickles(folder: Path) -> None:
    """The published files are object arrays exactly where rskp unpickles them (and load as such)."""
    from rskp_plugin.formats.npy import npy_header
    from rskp_plugin.data.wtalc import ANNOTATION_FILES, PICKLED_ANNOTATIONS

    if not folder.is_dir():
        pytest.skip(f"annotation files not found at {folder} (the shared data folder lies beside the repository)")
    for stem in ANNOTATION_FILES:
        dtype, _ = npy_header(folder / f"{stem}.npy", "annotation file")
        assert dtype.hasobject == (stem in PICKLED_ANNOTATIONS), stem


def test_japanese_vowels_dev_set_loads() -> None:
    if not JAPANESE_VOWELS.is_dir():
        pytest.skip(f"the JapaneseVowelsTAL dev set is not at {JAPANESE_VOWELS} (shared data beside the repository)")
    train = load_wtalc(JAPANESE_VOWELS, "JapaneseVowelsTAL", "validation")
    test = load_wtalc(JAPANESE_VOWELS, "JapaneseVowelsTAL", "test")
    assert (len(train), len(test), train.feature_dim, train.num_classes) == (200, 200, 36, 4)
    assert sum(v.num_snippets for v in train) == 48622 and sum(v.num_snippets for v in test) == 46232  # its README


# ------------------------------------------------------------------------------------------------ folders
def _write_folders(root: Path, ds: VideoDataset, split: str, *, with_duration: bool = True) -> dict:
    for modality, cols in (("rgb", slice(0, 4)), ("flow", slice(4, None))):
        (root / "features" / split / modality).mkdir(parents=True, exist_ok=True)
        for video in ds:
            np.save(root / "features" / split / modality / f"{video.name}.npy", video.features[:, cols])
    gt = ds.ground_truth()
    for entry in gt["database"].values():
        entry["subset"] = split
        # Bounds as strings, as in THUMOS14 gt.json.
        entry["annotations"] = [{"segment": [str(s) for s in a["segment"]], "label": a["label"]}
                                for a in entry["annotations"]]
        if not with_duration:
            del entry["duration"]
    return gt


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path, VideoDataset, VideoDataset]:
    train, test = _dataset(10, "validation", 5), _dataset(11, "test", 4)
    gt = _write_folders(tmp_path, train, "train")
    gt["database"].update(_write_folders(tmp_path, test, "test")["database"])
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return tmp_path, path, train, test


def test_folders_round_trip(folders) -> None:
    root, gt, train, test = folders
    for original, subset in ((train, "train"), (test, "test")):
        loaded = load_folders(root, gt, subset)
        assert loaded.class_names == tuple(sorted({CLASSES[c] for ds in (train, test) for v in ds
                                                   for c in v.segment_labels}))
        index = {c: i for i, c in enumerate(loaded.class_names)}
        for a, b in zip(loaded.videos, sorted(original.videos, key=lambda v: v.name)):
            assert a.name == b.name and np.array_equal(a.features, b.features) and a.duration == b.duration
            assert np.array_equal(a.segments, b.segments)
            assert [loaded.class_names[c] for c in a.segment_labels] == [CLASSES[c] for c in b.segment_labels]
            expected = np.zeros(loaded.num_classes, np.float32)
            expected[[index[CLASSES[c]] for c in b.segment_labels]] = 1
            assert np.array_equal(a.labels, expected)  # video labels = classes of the segments


def test_folders_loaded_json_object_classes_and_durations(folders, tmp_path: Path) -> None:
    root, gt, train, _ = folders
    data = json.loads(gt.read_text())
    for entry in data["database"].values():
        entry.pop("duration")
    loaded = load_folders(root, data, "train", class_names=CLASSES, snippets_per_second=2.0)
    assert loaded.class_names == CLASSES and loaded.snippets_per_second == 2.0
    for a, b in zip(loaded.videos, sorted(train.videos, key=lambda v: v.name)):
        assert a.duration == b.num_snippets / 2.0 and np.array_equal(a.segment_labels, b.segment_labels)


def test_folders_split_and_modalities(folders) -> None:
    root, gt, train, _ = folders
    rgb = load_folders(root, gt, "train", modalities=("rgb",))
    assert rgb.feature_dim == 4
    with pytest.raises(DataError, match="missing feature folder .*features/validation/rgb.*pass split="):
        load_folders(root, json.loads(gt.read_text().replace('"train"', '"validation"')), "validation")
    renamed = json.loads(gt.read_text().replace('"train"', '"validation"'))
    assert len(load_folders(root, renamed, "validation", split="train")) == len(train)


def _folder_video(root: Path, split: str = "test") -> tuple[Path, Path]:
    name = sorted(p.stem for p in (root / "features" / split / "rgb").iterdir())[1]
    return root / "features" / split / "rgb" / f"{name}.npy", root / "features" / split / "flow" / f"{name}.npy"


def _gt_edit(gt: Path, name: str, **entry) -> None:
    data = json.loads(gt.read_text())
    data["database"][name].update(entry)
    gt.write_text(json.dumps(data))


FOLDER_CASES = {
    "missing file": (lambda root, gt, rgb, flow: rgb.unlink(), "has no features: .*rgb/video_test_0001.npy does not"),
    "empty": (lambda root, gt, rgb, flow: (np.save(rgb, np.zeros((0, 4), np.float32)),
                                           np.save(flow, np.zeros((0, 2), np.float32))), "has no features"),
    "lengths differ": (lambda root, gt, rgb, flow: np.save(flow, np.ones((2, 2), np.float32)),
                       "modalities have different snippet counts"),
    "nan": (lambda root, gt, rgb, flow: np.save(rgb, np.load(rgb) * np.nan), "NaN/Inf"),
    "width": (lambda root, gt, rgb, flow: (np.save(rgb, np.ones((3, 5), np.float32)),
                                           np.save(flow, np.ones((3, 2), np.float32))), "feature width 7 differs"),
    "unreadable": (lambda root, gt, rgb, flow: rgb.write_bytes(b"junk"), "cannot read .*rgb/video_test_0001.npy"),
    "unknown label": (lambda root, gt, rgb, flow: _gt_edit(gt, "video_test_0001", annotations=[
        {"segment": [0.1, 0.5], "label": "Omega"}]), "segment label 'Omega' is not in the class list"),
    "outside": (lambda root, gt, rgb, flow: _gt_edit(gt, "video_test_0001", annotations=[
        {"segment": [0.1, 500.0], "label": "Alpha"}]), "end after the video"),
    "no segment": (lambda root, gt, rgb, flow: _gt_edit(gt, "video_test_0001", annotations=[{"label": "Alpha"}]),
                   "lacks a numeric 'segment'"),
}


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_folders_bad_video(folders, case: str) -> None:
    root, gt, _, _ = folders
    breaks, message = FOLDER_CASES[case]
    rgb, flow = _folder_video(root)
    breaks(root, gt, rgb, flow)
    with pytest.raises(DataError, match=message) as info:
        load_folders(root, gt, "test", class_names=CLASSES)
    assert "video_test_0001" in str(info.value) and "gt.json" in str(info.value)
    with pytest.warns(DataWarning, match="skipped 1 of 4 videos: video_test_0001"):
        ds = load_folders(root, gt, "test", class_names=CLASSES, on_error="skip")
    assert len(ds) == 3 and ds.skipped[0][0] == "video_test_0001"


def test_folders_width_is_decided_by_the_majority(folders) -> None:
    root, gt, _, _ = folders
    first = sorted((root / "features" / "test" / "rgb").iterdir())[0]
    np.save(first, np.ones((len(np.load(first)), 5), np.float32))  # video_test_0000: 5 + 2 = 7 wide, the others 6
    with pytest.raises(DataError, match="video video_test_0000: feature width 7 differs from the 6 of most videos"):
        load_folders(root, gt, "test", class_names=CLASSES)
    with pytest.warns(DataWarning, match="skipped 1 of 4 videos: video_test_0000"):
        ds = load_folders(root, gt, "test", class_names=CLASSES, on_error="skip")
    assert len(ds) == 3 and ds.feature_dim == 6
    with pytest.warns(DataWarning, match="skipped 3 of 4 videos"):
        assert load_folders(root, gt, "test", class_names=CLASSES, feature_dim=7, on_error="skip").names == (
            "video_test_0000",)


def test_folders_refuse_object_arrays(folders, tmp_path: Path) -> None:
    root, gt, _, _ = folders
    rgb, _ = _folder_video(root)
    marker = tmp_path / "code-ran"
    np.save(rgb, _object_array(_RunsCode(marker)), allow_pickle=True)
    with pytest.raises(DataError, match="video_test_0001: .*rgb/video_test_0001.npy holds Python objects"):
        load_folders(root, gt, "test", class_names=CLASSES)
    assert not marker.exists()


def test_folders_bad_files(folders, tmp_path: Path) -> None:
    root, gt, _, _ = folders
    with pytest.raises(DataError, match="missing ground-truth JSON: .*nope.json does not exist"):
        load_folders(root, tmp_path / "nope.json", "test")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="cannot read .*bad.json"):
        load_folders(root, bad, "test")
    bad.write_text('{"videos": {}}')
    with pytest.raises(DataError, match="'database' key"):
        load_folders(root, bad, "test")
    with pytest.raises(DataError, match="no video of subset 'val'; the subsets are \\['test', 'train'\\]"):
        load_folders(root, gt, "val", split="test")


# ------------------------------------------------------------------------------------------------ batching
def _wum_uniform(n: int, length: int) -> np.ndarray:
    """WUM/BaS-Net ``uniform_sampling`` written as a loop (reference)."""
    if n <= length:
        return np.arange(n)
    return np.floor(np.arange(length) * n / length).astype(int)


def test_collate_pads_masks_and_keeps_order() -> None:
    rng = np.random.default_rng(0)
    videos = [_video(rng, f"v{i}", length=t) for i, t in enumerate((5, 9, 2))]
    batch = collate(videos)
    assert isinstance(batch, Batch)
    assert batch.features.shape == (3, 9, 6) and batch.features.dtype == torch.float32
    assert batch.mask.dtype == torch.bool and batch.mask.sum(1).tolist() == [5, 9, 2]
    assert batch.labels.shape == (3, 4) and batch.names == ["v0", "v1", "v2"]
    for b, video in enumerate(videos):
        t = video.num_snippets
        assert np.array_equal(batch.features[b, :t].numpy(), video.features)
        assert torch.all(batch.features[b, t:] == 0) and torch.all(batch.indices[b, :t] == torch.arange(t))
        assert np.array_equal(batch.labels[b].numpy(), video.labels)


def test_padded_batch_equals_one_video_at_a_time() -> None:
    rng = np.random.default_rng(1)
    videos = [_video(rng, f"v{i}") for i in range(5)]
    batch = collate(videos)
    pooled = (batch.features * batch.mask[..., None]).sum(1) / batch.mask.sum(1, keepdim=True)
    for b, video in enumerate(videos):
        alone = collate([video])
        assert alone.mask.all()
        assert torch.allclose(pooled[b], alone.features[0].mean(0), atol=1e-6)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(n=st.integers(1, 60), length=st.integers(1, 40))
def test_uniform_sampling_matches_wum(n: int, length: int) -> None:
    assert uniform_positions(n, length).tolist() == _wum_uniform(n, length).tolist()


@settings(max_examples=40, derandomize=True, deadline=None)
@given(n=st.integers(1, 60), length=st.integers(1, 40), seed=st.integers(0, 10))
def test_random_sampling_stays_in_wum_intervals(n: int, length: int, seed: int) -> None:
    pos = random_positions(n, length, torch.Generator().manual_seed(seed)).numpy()
    assert pos.shape == (length,) and pos.min() >= 0 and pos.max() <= n - 1
    if n == length:
        assert pos.tolist() == list(range(n))
        return
    grid = np.floor(np.arange(length + 1) * n / length).astype(int)
    for i, p in enumerate(pos):  # WUM random_perturb: [g_i, g_(i+1)] inclusive, the last one up to n - 1
        high = (n - 1 if i == length - 1 else grid[i + 1]) if (i == length - 1 or grid[i] != grid[i + 1]) else grid[i]
        assert grid[i] <= p <= max(high, grid[i])
    assert np.all(np.diff(pos) >= 0)


def test_random_sampling_reaches_both_ends_of_each_interval() -> None:
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([random_positions(10, 4, gen) for _ in range(300)])
    # grid 0, 2, 5, 7 (, 10): intervals [0, 2], [2, 5], [5, 7], [7, 9]
    assert draws.min(0).values.tolist() == [0, 2, 5, 7] and draws.max(0).values.tolist() == [2, 5, 7, 9]


def test_collate_fixed_length_sampling() -> None:
    rng = np.random.default_rng(2)
    videos = [_video(rng, "long", length=30), _video(rng, "short", length=4)]
    uniform = collate(videos, length=8, sampling="uniform")
    assert uniform.features.shape[1] == 8 and uniform.mask.sum(1).tolist() == [8, 4]
    assert uniform.indices[0].tolist() == _wum_uniform(30, 8).tolist()
    assert np.array_equal(uniform.features[0].numpy(), videos[0].features[_wum_uniform(30, 8)])
    random = collate(videos, length=8, sampling="random", generator=torch.Generator().manual_seed(0))
    assert random.mask.all() and random.features.shape == (2, 8, 6)
    for b, video in enumerate(videos):
        assert np.array_equal(random.features[b].numpy(), video.features[random.indices[b].numpy()])
    with pytest.raises(DataError, match="needs a positive length"):
        collate(videos, sampling="uniform")
    with pytest.raises(DataError, match="sampling must be one of"):
        collate(videos, length=3, sampling="dense")
    with pytest.raises(DataError, match="at least one video"):
        collate([])
    with pytest.raises(DataError, match="differ in feature width"):
        collate([videos[0], _video(rng, "w", width=3)])


def test_iterate_batches_covers_each_video_once_and_is_seeded() -> None:
    ds = _dataset(4, "validation", 11)
    plain = list(iterate_batches(ds, 4, shuffle=False, seed=0))
    assert [len(b.names) for b in plain] == [4, 4, 3]
    assert [n for b in plain for n in b.names] == list(ds.names)
    shuffled = [n for b in iterate_batches(ds, 4, shuffle=True, seed=1) for n in b.names]
    assert sorted(shuffled) == sorted(ds.names) and shuffled != list(ds.names)
    assert shuffled == [n for b in iterate_batches(ds, 4, shuffle=True, seed=1) for n in b.names]
    assert shuffled != [n for b in iterate_batches(ds, 4, shuffle=True, seed=2) for n in b.names]
    a = list(iterate_batches(ds, 4, shuffle=True, seed=5, length=6, sampling="random"))
    b = list(iterate_batches(ds, 4, shuffle=True, seed=5, length=6, sampling="random"))
    assert all(torch.equal(x.indices, y.indices) for x, y in zip(a, b))
    assert [len(b.names) for b in iterate_batches(ds, 4, shuffle=False, seed=0, drop_last=True)] == [4, 4]
    with pytest.raises(DataError, match="batch_size"):
        next(iterate_batches(ds, 0, shuffle=False, seed=0))
