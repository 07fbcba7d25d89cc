"""benchmarks/make_motion_set.py: the smart-watch check set it builds loads as a valid W-TALC dataset.

The real recordings come from a wheel the tests do not download; a stand-in wheel holds recordings of the same
shape (6 channels x 100 samples, the four activities) with activity-dependent signals.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rskp_plugin.data import load_wtalc

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "make_motion_set.py"
ACTIVITIES = ("Standing", "Running", "Walking", "Badminton")


def _module():
    spec = importlib.util.spec_from_file_location("make_motion_set", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wheel(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as wheel:
        for split in ("TRAIN", "TEST"):
            rows = ["@problemName BasicMotions", "@dimensions 6", "@data"]
            for k, activity in enumerate(ACTIVITIES * 3):
                amplitude = ACTIVITIES.index(activity)  # standing still, the others moving more and more
                series = amplitude * np.sin(np.linspace(0, 20, 100) * (1 + k % 3))[None] + rng.normal(0, .1, (6, 100))
                rows.append(":".join(",".join(f"{v:.4f}" for v in ch) for ch in series) + f":{activity}")
            wheel.writestr(f"aeon/datasets/data/BasicMotions/BasicMotions_{split}.ts", "\n".join(rows) + "\n")
    return path


def test_the_motion_set_loads_with_consistent_segments(tmp_path) -> None:
    out = tmp_path / "motion"
    assert _module().main([str(_wheel(tmp_path / "aeon.whl")), str(out), "--videos", "12"]) == 0
    train = load_wtalc(out, "BasicMotionsTAL", "validation")
    test = load_wtalc(out, "BasicMotionsTAL", "test")
    assert len(train.videos) == len(test.videos) == 12
    assert tuple(train.class_names) == ("walking", "running", "badminton")
    feats = np.concatenate([v.features for v in train.videos])
    assert feats.shape[1] == 84  # 6 channels x 14 statistics
    np.testing.assert_allclose(feats.mean(0), 0, atol=1e-4)  # standardised on the training snippets
    for video in train.videos + test.videos:
        assert 1 <= len(video.segments) <= 6 and 1 <= len(set(video.segment_labels)) <= 2
        assert sorted(set(video.segment_labels)) == list(np.flatnonzero(video.labels))  # video labels = its instances
        seconds = np.asarray(video.segments)
        assert (seconds[:, 0] < seconds[:, 1]).all() and seconds.max() <= video.duration + 1e-9
        # instances are 4-20 snippets long and never touch: a background gap separates them
        snippets = np.round(seconds * 25 / 16).astype(int)
        assert ((snippets[:, 1] - snippets[:, 0] >= 4) & (snippets[:, 1] - snippets[:, 0] <= 20)).all()
        order = np.sort(snippets, axis=0)
        assert (order[1:, 0] - order[:-1, 1] >= 3).all()


def test_an_existing_output_folder_is_refused(tmp_path) -> None:
    out = tmp_path / "motion"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(SystemExit):
        _module().main([str(_wheel(tmp_path / "aeon.whl")), str(out)])
    assert (out / "mine.txt").read_text() == "keep"


def test_a_file_that_is_not_the_wheel_is_a_clear_error(tmp_path, capsys) -> None:
    bad = tmp_path / "notes.whl"
    bad.write_text("not a zip")
    with pytest.raises(SystemExit):
        _module().main([str(bad), str(tmp_path / "motion")])
    assert "pass the aeon 1.6.0 wheel" in capsys.readouterr().err and not (tmp_path / "motion").exists()
