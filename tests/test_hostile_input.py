"""Careless or hostile input, round two: each test is one case a user met; the command gives a one-line error (or a
warning where the input is legal), no traceback, nothing overwritten or lost, no code from a data file run."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest

from rskp_plugin import cli
from rskp_plugin.data import make_synthetic, write_wtalc

TINY = [
    "--set", "data.feature_dim=16", "--set", "data.num_train=8", "--set", "data.num_test=4",
    "--set", "head.options={embed_dim: 16}", "--set", "optimizer.accumulation=4", "--set", "optimizer.batch_size=4",
    "--set", "rskp.memory.warmup_epochs=0", "--no-progress",
]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # rich wraps long messages at the terminal width


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("error:") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A one-epoch run of the head WUM on tiny synthetic data."""
    folder = tmp_path_factory.mktemp("trained") / "run"
    assert cli.main(["train", "--config", "quick", "--head", "wum", "--epochs", "1", "--output-dir", str(folder),
                     *TINY]) == 0
    return folder


@pytest.fixture()
def tiny_wtalc(tmp_path: Path) -> Path:
    train, test = make_synthetic(seed=3, feature_dim=16, num_train=4, num_test=3, difficulty=0)
    write_wtalc(train, test, tmp_path / "data", "Tiny")
    return tmp_path / "data"


# ------------------------------------------------------------------------------------ pickled payloads
class Payload:
    """Unpickling this creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return builtins.open, (str(self.marker), "w")


def _object_array(*items: object) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def test_payload_in_an_object_npy_given_to_predict_never_runs(trained, tmp_path, capsys) -> None:
    marker = tmp_path / "ran"
    features = tmp_path / "Mine-I3D-JOINTFeatures.npy"
    np.save(features, _object_array(np.zeros((4, 16), np.float32), Payload(marker)), allow_pickle=True)
    code, _, err = run(capsys, "predict", "--checkpoint", str(trained / "best.pt"), "--features", str(features),
                       "--out", str(tmp_path / "preds.json"))
    one_line_error(code, err, "io.open", str(features), "could run code")
    assert not marker.exists()


def test_payload_in_wtalc_segments_never_runs_in_train_or_evaluate(tiny_wtalc, tmp_path, capsys) -> None:
    marker = tmp_path / "ran"
    segments = tiny_wtalc / "Tiny-Annotations" / "segments.npy"
    array = np.load(segments, allow_pickle=True)
    array[-1] = [[0.0, 1.0], Payload(marker)]
    np.save(segments, array, allow_pickle=True)
    code, _, err = run(capsys, "train", "--data", "wtalc", "--data-root", str(tiny_wtalc), "--dataset-name", "Tiny",
                       "--epochs", "1", "--output-dir", str(tmp_path / "run"), *TINY)
    one_line_error(code, err, "segments.npy", "io.open")
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({"results": {}}))
    code, _, err = run(capsys, "evaluate", "--ground-truth", str(tiny_wtalc / "Tiny-Annotations"),
                       "--predictions", str(preds))
    one_line_error(code, err, "segments.npy", "io.open")
    assert not marker.exists()


def test_restricted_unpickler_reads_numpy_and_python2_style_object_arrays(tmp_path) -> None:
    import pickle

    from rskp_plugin.formats.npy import load_npy

    array = _object_array(np.zeros((2, 3), np.float32), [[1.0, 2.5], [np.float64(3), 4]], b"abc", ("x", None))
    np.save(tmp_path / "new.npy", array, allow_pickle=True)
    with open(tmp_path / "old.npy", "wb") as handle:  # protocol 2, as the original W-TALC files (Python 2)
        np.lib.format.write_array_header_1_0(handle, {"descr": "|O", "fortran_order": False, "shape": (4,)})
        pickle.dump(array, handle, protocol=2)
    for name in ("new.npy", "old.npy"):
        loaded = load_npy(tmp_path / name, "test file", pickled=True)
        assert repr(loaded.tolist()) == repr(array.tolist())
