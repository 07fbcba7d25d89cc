"""``rskp predict``'s feature loading: what it accepts, and a clear error (never a traceback, never an unpickled
pickle) for everything else."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from rskp_plugin import cli
from rskp_plugin.engine import predict
from rskp_plugin.engine.predict import read_feature_files
from rskp_plugin.errors import DataError

D = 16


class RunsCode:
    """Unpickling this object creates ``marker``: proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def objects(*items: object) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


def features(t: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((t, D), dtype=np.float32)


def test_accepts_arrays_wtalc_object_arrays_and_folders(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", features(5))
    np.save(tmp_path / "wtalc.npy", objects(features(3, 1), features(4, 2).astype(np.float64)), allow_pickle=True)
    videos = dict(read_feature_files([tmp_path / "one.npy", tmp_path / "wtalc.npy"], feature_dim=D))
    assert list(videos) == ["one", "wtalc_0000", "wtalc_0001"]
    np.testing.assert_array_equal(videos["wtalc_0001"], features(4, 2))
    assert all(x.dtype == np.float32 for x in videos.values())
    assert [n for n, _ in read_feature_files([tmp_path], feature_dim=D)] == ["one", "wtalc_0000", "wtalc_0001"]


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    cases = {}
    path = tmp_path / "strings.npy"
    np.save(path, np.array([["a"] * D] * 3))
    cases["strings"] = (path, r"video strings holds <U1 values, not numbers; pass \(T, D\) float features")
    path = tmp_path / "truncated.npy"
    np.save(path, features(50))
    path.write_bytes(path.read_bytes()[:-100])
    cases["truncated"] = (path, "cannot read feature file .*truncated.npy: it is truncated or corrupt")
    path = tmp_path / "random.npy"
    path.write_bytes(np.random.default_rng(0).bytes(300))
    cases["random bytes"] = (path, "cannot read feature file .*random.npy: it is not a .npy file")
    path = tmp_path / "empty.npy"
    path.write_bytes(b"")
    cases["empty file"] = (path, "empty.npy: it is not a .npy file")
    path = tmp_path / "objects.npy"
    np.save(path, objects(features(3), "text", None), allow_pickle=True)
    cases["string entry"] = (path, "video objects_0001 holds <U4 values, not numbers")
    path = tmp_path / "none.npy"
    np.save(path, objects(features(3), None), allow_pickle=True)
    cases["None entry"] = (path, "video none_0001 holds Python objects, not numbers")
    path = tmp_path / "nested.npy"
    np.save(path, np.empty((2, 2), dtype=object), allow_pickle=True)
    cases["2-d object array"] = (path, r"an object array of shape \(2, 2\)")
    return cases


CASES = ["strings", "truncated", "random bytes", "empty file", "string entry", "None entry", "2-d object array"]


@pytest.mark.parametrize("case", CASES)
def test_bad_files_are_clear_errors(tmp_path: Path, case: str) -> None:
    path, message = _bad_files(tmp_path)[case]
    with pytest.raises(DataError, match=message) as info:
        read_feature_files([path], feature_dim=D)
    assert path.name in str(info.value)


def test_a_pickle_is_never_loaded(tmp_path: Path) -> None:
    marker, path = tmp_path / "code-ran", tmp_path / "features.npy"
    with open(path, "wb") as handle:
        pickle.dump(RunsCode(marker), handle)
    with pytest.raises(DataError, match="features.npy: it is a Python pickle, which rskp never loads"):
        read_feature_files([path], feature_dim=D)
    assert not marker.exists()


@pytest.fixture
def no_checkpoint(monkeypatch):
    """``rskp predict`` reads the features after the checkpoint: a stand-in model is enough to reach them."""
    meta = {"snippets_per_second": 25 / 16, "class_names": ["a", "b"], "feature_dim": D}
    monkeypatch.setattr(predict, "load_trained_model", lambda path, device="auto": (None, meta))


@pytest.mark.parametrize("case", CASES)
def test_cli_exit_code_2_with_one_line(tmp_path: Path, capsys, no_checkpoint, case: str) -> None:
    path, message = _bad_files(tmp_path)[case]
    code = cli.main(["predict", "--checkpoint", "x.pt", "--features", str(path), "--out", str(tmp_path / "p.json")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and err.startswith("error:") and path.name in err and "Traceback" not in err
    assert not (tmp_path / "p.json").exists()
