"""Synthetic THUMOS14-shaped data: shapes, determinism, realism against the real annotations, difficulty, CLI."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rskp_plugin.cli import main
from rskp_plugin.data import CLASS_NAMES, DataWarning, load_wtalc, make_synthetic
from rskp_plugin.data._fit import annotation_statistics, read_real
from rskp_plugin.data.synthetic import sample_annotations
from rskp_plugin.errors import DataError

REAL = Path(os.environ.get("RSKP_THUMOS_ANNOTATIONS", Path(__file__).resolve().parents[3] / "shared" / "data"
                           / "thumos14reduced-annotations"))


@pytest.fixture(scope="module")
def small():
    return make_synthetic(seed=0, feature_dim=32, num_train=40, num_test=30)


def test_shapes_names_and_labels(small) -> None:
    train, test = small
    assert (len(train), len(test)) == (40, 30) and (train.subset, test.subset) == ("validation", "test")
    assert train.class_names == test.class_names == CLASS_NAMES and len(CLASS_NAMES) == 20
    assert train.snippets_per_second == 25 / 16 and train.feature_dim == 32
    assert set(train.names).isdisjoint(test.names)
    for video in train.videos + test.videos:
        x = video.features
        assert x.dtype == np.float32 and x.shape == (int(np.ceil(video.duration * 25 / 16)), 32)
        assert np.isfinite(x).all() and (x >= 0).all() and (x > 0).mean() > 0.5
        assert len(video.segments) >= 1 and (video.segments[:, 1] > video.segments[:, 0]).all()
        assert video.segments.min() >= 0 and video.segments.max() <= video.duration
        assert np.allclose(video.segments, np.round(video.segments, 1))  # 0.1 s resolution as in THUMOS14
        assert set(np.flatnonzero(video.labels)) == set(video.segment_labels.tolist())


def test_cliffdiving_always_duplicates_diving(small) -> None:
    cliff, diving = CLASS_NAMES.index("CliffDiving"), CLASS_NAMES.index("Diving")
    seen = 0
    for video in small[0].videos + small[1].videos:
        cliffs = {tuple(s) for s in video.segments[video.segment_labels == cliff].tolist()}
        dives = {tuple(s) for s in video.segments[video.segment_labels == diving].tolist()}
        assert cliffs <= dives
        seen += len(cliffs)
    annotations = sample_annotations(np.random.default_rng(1), 400)
    assert sum((a["segment_labels"] == cliff).sum() for a in annotations) > 0 or seen > 0


def test_same_seed_same_data_other_seed_other_data(small) -> None:
    again = make_synthetic(seed=0, feature_dim=32, num_train=40, num_test=30)
    assert again[0].videos == small[0].videos and again[1].videos == small[1].videos
    other = make_synthetic(seed=1, feature_dim=32, num_train=40, num_test=30)
    assert other[0].videos != small[0].videos


@pytest.mark.parametrize("width", [16, 48, 256])
def test_any_width_from_16(width: int) -> None:
    train, test = make_synthetic(seed=2, feature_dim=width, num_train=3, num_test=2)
    assert train.feature_dim == test.feature_dim == width


def test_same_seed_same_videos_at_any_width() -> None:
    """A user trains at one width and writes the set at another: names, durations and annotations must agree."""
    narrow = make_synthetic(seed=5, feature_dim=16, num_train=20, num_test=15)
    wide = make_synthetic(seed=5, feature_dim=96, num_train=20, num_test=15)
    for a, b in zip(narrow, wide):
        assert [v.name for v in a.videos] == [v.name for v in b.videos]
        for x, y in zip(a.videos, b.videos):
            assert x.duration == y.duration and list(x.segment_labels) == list(y.segment_labels)
            assert np.array_equal(x.segments, y.segments)
        assert [len(v.features) for v in a.videos] == [len(v.features) for v in b.videos]
        assert all(np.array_equal(x.labels, y.labels) for x, y in zip(a.videos, b.videos))


def test_bad_parameters() -> None:
    with pytest.raises(DataError, match="feature_dim must be >= 16"):
        make_synthetic(feature_dim=8)
    with pytest.raises(DataError, match="difficulty"):
        make_synthetic(difficulty=-1)
    with pytest.raises(DataError, match="at least one"):
        make_synthetic(num_test=0)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-8)


def test_features_are_temporally_smooth(small) -> None:
    rng = np.random.default_rng(0)
    adjacent, distant = [], []
    for video in small[1].videos:
        x = video.features
        adjacent.append(_cosine(x[1:], x[:-1]).mean())
        distant.append(_cosine(x, x[rng.permutation(len(x))]).mean())
    assert np.mean(adjacent) > np.mean(distant) + 0.02


def _snippet_truth(video, sps: float) -> np.ndarray:
    """(T, C) bool: snippet centre inside an instance of the class."""
    centres = (np.arange(video.num_snippets) + 0.5) / sps
    truth = np.zeros((video.num_snippets, len(CLASS_NAMES)), dtype=bool)
    for (s, e), c in zip(video.segments, video.segment_labels):
        truth[(centres >= s) & (centres < e), c] = True
    return truth


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    scores = np.concatenate([pos, neg])
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _localisation_auc(difficulty: float) -> tuple[float, float]:
    """Oracle linear probe per class (class action mean minus background mean, fitted on the training set with the
    true snippet labels): AUC of action vs background snippets inside the test videos of that class, and the gap in
    probe score between background of that class's videos and background of other videos (class context)."""
    train, test = make_synthetic(seed=3, feature_dim=64, difficulty=difficulty, num_train=60, num_test=60)
    sps = train.snippets_per_second

    def pieces(ds):
        x = np.concatenate([v.features for v in ds])
        truth = np.concatenate([_snippet_truth(v, sps) for v in ds])
        video_labels = np.concatenate([np.repeat(v.labels[None] > 0, v.num_snippets, 0) for v in ds])
        return x, truth, video_labels

    x, truth, vlab = pieces(train)
    xt, trutht, vlabt = pieces(test)
    background = ~truth.any(1)
    aucs, gaps = [], []
    for c in range(len(CLASS_NAMES)):
        if truth[:, c].sum() < 5 or not (vlabt[:, c] & ~trutht.any(1)).any() or not trutht[:, c].any():
            continue
        w = x[truth[:, c]].mean(0) - x[background].mean(0)
        score = xt @ w
        bg_test = ~trutht.any(1)
        aucs.append(_auc(score[trutht[:, c]], score[vlabt[:, c] & bg_test]))
        spread = score[bg_test].std() + 1e-8
        gaps.append((score[vlabt[:, c] & bg_test].mean() - score[~vlabt[:, c] & bg_test].mean()) / spread)
    return float(np.mean(aucs)), float(np.mean(gaps))


def test_difficulty_makes_localisation_harder() -> None:
    easy, medium, hard = (_localisation_auc(d) for d in (0.0, 1.0, 2.0))
    # difficulty 0: actions separate from background almost perfectly.
    assert easy[0] > 0.97
    # default: partial snippets look half like background, backgrounds carry class-correlated context.
    assert medium[0] < easy[0] - 0.02 and medium[1] > easy[1] + 0.2
    assert hard[0] < medium[0] - 0.1 and hard[1] > medium[1] + 0.5


def _stats(datasets) -> dict:
    videos = [v for ds in datasets for v in ds]
    return annotation_statistics(
        [v.duration for v in videos], [v.segments for v in videos],
        [[CLASS_NAMES[c] for c in v.segment_labels] for v in videos], CLASS_NAMES,
    )


def test_statistics_match_the_real_annotations() -> None:
    if not REAL.is_dir():
        pytest.skip(f"real THUMOS14 annotations not found at {REAL} (set RSKP_THUMOS_ANNOTATIONS)")
    real_data = read_real(REAL)
    real = annotation_statistics(real_data["durations"], real_data["segments"], real_data["labels"],
                                 real_data["class_names"])
    assert real_data["class_names"] == CLASS_NAMES
    # Three full-size draws (412 videos each, narrow features: the annotations do not depend on the width).
    runs = [_stats(make_synthetic(seed=s, feature_dim=16)) for s in range(3)]
    mean = {k: np.mean([r[k] for r in runs], axis=0) for k in runs[0]}
    for key in ("duration_median", "instances_median", "instances_mean", "length_median", "coverage_median"):
        assert abs(mean[key] - real[key]) <= 0.15 * real[key], (key, mean[key], real[key])
    for key in ("length_p25", "length_p75"):  # quartiles: the fitted log-normal's upper tail is ~10 % short
        assert abs(mean[key] - real[key]) <= 0.2 * real[key], (key, mean[key], real[key])
    assert abs(mean["duration_p90"] - real["duration_p90"]) <= 0.25 * real["duration_p90"]
    assert abs(mean["instances_count_corr"] - real["instances_count_corr"]) < 0.1
    assert np.abs(mean["classes_per_video"] - real["classes_per_video"]).max() < 0.04
    assert 0.5 * np.abs(mean["class_share"] - real["class_share"]).sum() < 0.15  # total variation distance
    assert np.abs(mean["video_class_share"] - real["video_class_share"]).max() < 0.03
    assert all(r["duplicate_fraction"] == 1.0 for r in runs) == (real["duplicate_fraction"] == 1.0)
    assert all(r["videos"] == 412 for r in runs)


def test_fitted_figures_in_the_code_come_from_the_fit_command() -> None:
    if not REAL.is_dir():
        pytest.skip(f"real THUMOS14 annotations not found at {REAL} (set RSKP_THUMOS_ANNOTATIONS)")
    from rskp_plugin.data import _fit
    from rskp_plugin.data import synthetic_figures as synthetic

    source = Path(synthetic.__file__).read_text()
    rendered = _fit.render(_fit.fit(REAL))
    assert rendered in source  # python -m rskp_plugin.data._fit <annotations> regenerates the block verbatim


def test_make_synthetic_cli_round_trip(tmp_path: Path, capsys) -> None:
    args = ["--seed", "4", "--feature-dim", "16", "--num-train", "6", "--num-test", "5", "--difficulty", "0.5"]
    assert main(["make-synthetic", "--out", str(tmp_path), *args]) == 0
    assert "validation" in capsys.readouterr().out
    train, test = make_synthetic(seed=4, feature_dim=16, num_train=6, num_test=5, difficulty=0.5)
    for original in (train, test):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", DataWarning)
            loaded = load_wtalc(tmp_path, "Thumos14reduced", original.subset)  # strict: no segment out of range
        assert loaded.videos == original.videos and loaded.class_names == original.class_names
    assert main(["make-synthetic", "--out", str(tmp_path / "x"), "--feature-dim", "4"]) == 2
    assert "feature_dim must be >= 16" in capsys.readouterr().err
