"""Careless or hostile input, round two: each test is one case a user met; the command gives a one-line error (or a
warning where the input is legal), no traceback, nothing overwritten or lost, no code from a data file run."""

from __future__ import annotations

import builtins
import importlib.metadata
import json
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from rskp_plugin import cli
from rskp_plugin.config_io import load_yaml
from rskp_plugin.data import make_synthetic, write_wtalc
from rskp_plugin.engine import ExperimentConfig
from rskp_plugin.errors import ConfigError

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


# ------------------------------------------------------------------------------------ YAML configs
def test_yaml_duplicate_top_level_key_is_refused(tmp_path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train: {epochs: 2}\nhead: {name: wum}\ntrain: {epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'train' \(first given on line 1\).*line 3"):
        load_yaml(ExperimentConfig, path)


def test_yaml_merge_keys_still_override(tmp_path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  <<: {epochs: 2, eval_interval: 1}\n  epochs: 4\n")
    config = load_yaml(ExperimentConfig, path)
    assert (config.train.epochs, config.train.eval_interval) == (4, 1)


def test_yaml_alias_bomb_is_refused_fast_and_small(tmp_path, capsys) -> None:
    levels = "abcdefghi"  # 9 levels: each holds the previous anchor's definition once and 9 aliases of it
    value = "&a [" + ",".join(["0.1"] * 10) + "]"
    for previous, name in zip(levels, levels[1:]):
        value = f"&{name} [{value}" + f",*{previous}" * 9 + "]"
    path = tmp_path / "bomb.yaml"
    path.write_text(f"train:\n  tiou: {value}\n")
    assert len(path.read_bytes()) < 600
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError, match="expands to more than"):
            load_yaml(ExperimentConfig, path)
        elapsed, peak = time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1 and peak < 100e6
    code, _, err = run(capsys, "train", "--config", str(path), "--output-dir", str(tmp_path / "run"))
    one_line_error(code, err, "bomb.yaml", "aliases")
    assert len(err) < 1000


def test_yaml_recursive_alias_is_refused(tmp_path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  tiou: &a [0.5, *a]\n")
    with pytest.raises(ConfigError, match="recursive"):
        load_yaml(ExperimentConfig, path)


def test_scalar_for_a_list_names_the_key(tmp_path, capsys) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train: {tiou: 0.5}\n")
    code, _, err = run(capsys, "train", "--config", str(path), "--output-dir", str(tmp_path / "run"))
    one_line_error(code, err, '"train.tiou" must be a list')


def test_invalid_value_names_its_key_and_shows_a_capped_value(tmp_path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  epochs: 3\n  tiou: [" + ", ".join(["2.0"] * 5000) + "]\n")
    with pytest.raises(ConfigError, match='"train.tiou"') as info:
        load_yaml(ExperimentConfig, path)
    assert len(str(info.value)) < 700


# ------------------------------------------------------------------------------------ run folder lock
def test_a_second_process_training_into_a_running_runs_folder_is_refused(tmp_path, capsys) -> None:
    import os
    import signal
    import subprocess
    import sys

    folder = tmp_path / "run"
    holder = subprocess.Popen(  # a first `rskp train` still running: it holds the folder's lock
        [sys.executable, "-c", "import sys; from pathlib import Path; from rskp_plugin.engine.output import "
         "prepare_run_dir; prepare_run_dir(Path(sys.argv[1]), overwrite=False, continuing=None); print('held', "
         "flush=True); sys.stdin.read()", str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in sys.path if p)})
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = run(capsys, "train", "--config", "quick", "--head", "wum", "--epochs", "1", "--output-dir",
                           str(folder), *TINY)
        one_line_error(code, err, "in use by another rskp process", f"PID {holder.pid}", "--output-dir")
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: the kernel drops the lock, none is left stale
        holder.wait()
    code, _, err = run(capsys, "train", "--config", "quick", "--head", "wum", "--epochs", "1", "--output-dir",
                       str(folder), *TINY)
    assert code == 0, err


# ------------------------------------------------------------------------------------ never destroy user data
SYNTH = ["--feature-dim", "16", "--num-train", "4", "--num-test", "3", "--difficulty", "0"]


@pytest.mark.parametrize("layout", ["wtalc", "folders"])
def test_make_synthetic_refuses_a_folder_holding_files_without_overwrite(tmp_path, capsys, layout) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "gt.json").write_text('{"database": {"mine": {}}}')
    code, _, err = run(capsys, "make-synthetic", "--out", str(data), "--layout", layout, *SYNTH)
    one_line_error(code, err, "already holds files (gt.json)", "--overwrite")
    assert (data / "gt.json").read_text() == '{"database": {"mine": {}}}'
    assert run(capsys, "make-synthetic", "--out", str(data), "--layout", layout, "--overwrite", *SYNTH)[0] == 0
    assert run(capsys, "make-synthetic", "--out", str(tmp_path / "new"), "--layout", layout, *SYNTH)[0] == 0


def test_make_synthetic_on_a_full_disk_leaves_no_truncated_file(tmp_path, capsys, monkeypatch) -> None:
    import errno

    real_save = np.save

    def full_disk(handle, array, **kwargs):  # noqa: ANN001, ANN202
        if isinstance(array, np.ndarray) and array.dtype.hasobject and len(array) == 7:  # the feature file
            handle.write(b"\x93NUMPY partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(handle, array, **kwargs)

    monkeypatch.setattr(np, "save", full_disk)
    code, _, err = run(capsys, "make-synthetic", "--out", str(tmp_path / "data"), "--dataset-name", "Tiny", *SYNTH)
    one_line_error(code, err, "Tiny-I3D-JOINTFeatures.npy", "no space left on the device")
    assert not list((tmp_path / "data").rglob("*I3D*")) and not list((tmp_path / "data").rglob("*.tmp"))


@pytest.mark.parametrize("target", ["last.pt", "best.pt", "results.json", "config.yaml"])
def test_predict_out_never_replaces_a_run_file(trained, tmp_path, capsys, target) -> None:
    features = tmp_path / "v.npy"
    np.save(features, np.zeros((5, 16), np.float32))
    before = (trained / target).read_bytes()
    code, _, err = run(capsys, "predict", "--checkpoint", str(trained / "best.pt"), "--features", str(features),
                       "--out", str(trained / target))
    one_line_error(code, err, "would destroy the")
    assert (trained / target).read_bytes() == before


def test_predict_out_never_replaces_an_annotation_file_it_reads(trained, tmp_path, capsys) -> None:
    train, test = make_synthetic(seed=3, feature_dim=16, num_train=4, num_test=3, difficulty=0)
    write_wtalc(train, test, tmp_path, "Tiny")
    subset = tmp_path / "Tiny-Annotations" / "subset.npy"
    before = subset.read_bytes()
    code, _, err = run(capsys, "predict", "--checkpoint", str(trained / "best.pt"), "--features",
                       str(tmp_path / "Tiny-I3D-JOINTFeatures.npy"), "--subset", "test", "--out", str(subset))
    one_line_error(code, err, "holds data")
    assert subset.read_bytes() == before


# ------------------------------------------------------------------------------------ plugins
def test_a_plugin_that_exits_at_import_is_named_and_the_others_work(tmp_path, monkeypatch, capsys) -> None:
    import sys
    import textwrap

    from test_plugins import GOOD, FakeDist, FakeEntryPoint

    from rskp_plugin import plugins
    from rskp_plugin.plugins import PluginLoadWarning, available_heads, head_errors, make_plugin_manager

    (tmp_path / "rskp_fake_exits.py").write_text("import sys\nsys.exit('cannot find my weights')\n")
    (tmp_path / "rskp_fake_exits_later.py").write_text(textwrap.dedent("""
        from rskp_plugin.hookspecs import hookimpl

        @hookimpl
        def register_heads(register):
            raise SystemExit(3)
    """))
    (tmp_path / "rskp_fake_good.py").write_text(textwrap.dedent("""
        from rskp_plugin import HeadSpec
        from rskp_plugin.hookspecs import hookimpl

        @hookimpl
        def register_heads(register):
            register(HeadSpec(name="good", factory=dict, summary="A good fake head."))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [FakeEntryPoint("facnet", "rskp_fake_exits", FakeDist("rskp-head-facnet", "0.1")),
           FakeEntryPoint("later", "rskp_fake_exits_later", FakeDist("rskp-head-later", "0.2")), GOOD]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **selection: list(eps))
    monkeypatch.setattr(plugins, "_manager", plugins._manager)
    try:
        pm = make_plugin_manager()
        assert available_heads(pm) == ["good"]
        errors = head_errors(pm)
        assert "SystemExit('cannot find my weights')" in str(errors["facnet"]) and "rskp-head-facnet" in str(
            errors["facnet"])
        assert "SystemExit(3)" in str(errors["later"])
        with pytest.warns(PluginLoadWarning):
            plugins.refresh()
        code, out, _ = run(capsys, "heads")
        assert code == 0 and "good" in out and "rskp-head-facnet" in " ".join(out.split())
        monkeypatch.chdir(tmp_path)
        code, _, err = run(capsys, "train", "--head", "facnet", "--no-progress")
        one_line_error(code, err, 'entry point "facnet = rskp_fake_exits"', "rskp-head-facnet", "cannot find my")
    finally:
        for name in ("rskp_fake_exits", "rskp_fake_exits_later", "rskp_fake_good"):
            sys.modules.pop(name, None)



# ------------------------------------------------------------------------------------ duplicate names
def test_a_class_named_twice_is_refused(tiny_wtalc, tmp_path, capsys) -> None:
    classlist = tiny_wtalc / "Tiny-Annotations" / "classlist.npy"
    names = np.load(classlist)
    np.save(classlist, np.concatenate([names, names[:1]]))
    code, _, err = run(capsys, "train", "--data", "wtalc", "--data-root", str(tiny_wtalc), "--dataset-name", "Tiny",
                       "--epochs", "1", "--output-dir", str(tmp_path / "run"), *TINY)
    one_line_error(code, err, "classlist.npy names a class twice", names[0].decode())
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({"results": {}}))
    code, _, err = run(capsys, "evaluate", "--ground-truth", str(tiny_wtalc / "Tiny-Annotations"),
                       "--predictions", str(preds))
    one_line_error(code, err, "classlist.npy names a class twice")
    from rskp_plugin.data import VideoDataset
    from rskp_plugin.errors import DataError

    with pytest.raises(DataError, match="duplicate class names"):
        VideoDataset("tiny", "test", ["a", "b", "a"], [])


def test_two_test_videos_of_one_name_are_refused_by_evaluate(tiny_wtalc, tmp_path, capsys) -> None:
    videonames = tiny_wtalc / "Tiny-Annotations" / "videoname.npy"
    subsets = [s.decode() for s in np.load(tiny_wtalc / "Tiny-Annotations" / "subset.npy")]
    names = np.load(videonames)
    tests = [i for i, s in enumerate(subsets) if s == "test"]
    names[tests[1]] = names[tests[0]]
    np.save(videonames, names)
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({"results": {}}))
    code, _, err = run(capsys, "evaluate", "--ground-truth", str(tiny_wtalc / "Tiny-Annotations"),
                       "--predictions", str(preds))
    one_line_error(code, err, "videoname.npy names a video of subset 'test' twice", names[tests[0]].decode())


def test_a_video_key_given_twice_in_json_warns_and_keeps_the_last(tmp_path, capsys) -> None:
    gt = tmp_path / "gt.json"
    gt.write_text('{"database": {"v": {"annotations": [{"segment": [0, 5], "label": "A"}]},'
                  ' "v": {"annotations": [{"segment": [10, 15], "label": "A"}]}}}')
    preds = tmp_path / "preds.json"
    preds.write_text('{"results": {"v": [{"label": "A", "score": 1, "segment": [0, 5]}],'
                     ' "v": [{"label": "A", "score": 1, "segment": [10, 15]}]}}')
    code, out, err = run(capsys, "evaluate", "--ground-truth", str(gt), "--predictions", str(preds), "--json")
    assert code == 0
    assert err.count("warning:") == 2 and "1 key(s) given twice in one object ('v'); the last of each is used" in err
    assert json.loads(out)["avg_map_percent"] == 100


def test_segments_kept_past_the_video_end_are_counted_in_a_warning(tiny_wtalc) -> None:
    from rskp_plugin.data import DataWarning, load_wtalc

    segments = tiny_wtalc / "Tiny-Annotations" / "segments.npy"
    array = np.load(segments, allow_pickle=True)
    array[-1] = [[1e4, 1e4 + 1.0] for _ in array[-1]]  # start after the video ends
    np.save(segments, array, allow_pickle=True)
    with pytest.warns(DataWarning, match=rf"kept {len(array[-1])} segments ending after their video as annotated"):
        load_wtalc(tiny_wtalc, "Tiny", "test", out_of_range="keep")
    with pytest.raises(Exception, match="end after the video"):
        load_wtalc(tiny_wtalc, "Tiny", "test")


# ------------------------------------------------------------------------------------ paths and IO
LONG = "x" * 300  # a file name over 255 bytes


@pytest.mark.parametrize("case", ["train-output", "train-config", "predict-out", "predict-features",
                                  "predict-checkpoint", "evaluate-gt", "plot-run"])
def test_names_too_long_are_one_line_errors(trained, tmp_path, capsys, case) -> None:
    pytest.importorskip("matplotlib") if case == "plot-run" else None
    long = str(tmp_path / LONG)
    features = tmp_path / "v.npy"
    np.save(features, np.zeros((5, 16), np.float32))
    preds = tmp_path / "p.json"
    preds.write_text('{"results": {}}')
    predict = ["predict", "--checkpoint", str(trained / "best.pt"), "--features", str(features), "--out",
               str(tmp_path / "out.json")]
    argv = {
        "train-output": ["train", "--config", "quick", "--epochs", "1", "--output-dir", long, *TINY],
        "train-config": ["train", "--config", long + ".yaml"],
        "predict-out": predict[:-1] + [long + ".json"],
        "predict-features": predict[:4] + [long + ".npy"] + predict[5:],
        "predict-checkpoint": [predict[0], predict[1], long + ".pt", *predict[3:]],
        "evaluate-gt": ["evaluate", "--ground-truth", long + ".json", "--predictions", str(preds)],
        "plot-run": ["plot", "--run", long],
    }[case]
    code, _, err = run(capsys, *argv)
    one_line_error(code, err)
    assert "too long" in err and "xxxx ... xxxx" in err and len(err) < 500, err


def test_a_full_standard_output_is_a_one_line_error(tmp_path) -> None:
    import os
    import subprocess
    import sys

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    gt = tmp_path / "gt.json"
    gt.write_text('{"database": {"v": {"annotations": [{"segment": [0, 5], "label": "A"}]}}}')
    preds = tmp_path / "p.json"
    preds.write_text('{"results": {"v": [{"label": "A", "score": 1, "segment": [0, 5]}]}}')
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "rskp_plugin.cli", "evaluate", "--ground-truth", str(gt),
                               "--predictions", str(preds), "--json"], stdout=full, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    assert done.returncode == 2 and "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert "cannot write to standard output: no space left on the device" in done.stderr


def test_a_symlink_loop_or_a_device_is_named_as_such(trained, tmp_path, capsys) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for features, needle in ((tmp_path / "a", "symbolic"), ("/dev/zero", "not a regular file")):
        code, _, err = run(capsys, "predict", "--checkpoint", str(trained / "best.pt"), "--features", str(features),
                           "--out", str(tmp_path / "p.json"))
        one_line_error(code, err, needle)
    code, _, err = run(capsys, "predict", "--checkpoint", str(tmp_path / "a"), "--features", "/dev/zero",
                       "--out", str(tmp_path / "p.json"))
    one_line_error(code, err, "symbolic")


def test_unreadable_files_are_one_line_errors(trained, tmp_path, capsys, monkeypatch) -> None:
    """Mode 000 means nothing to root, so the refusal is simulated where the file is opened."""
    import errno
    import os

    features = tmp_path / "v.npy"
    np.save(features, np.zeros((5, 16), np.float32))
    real_open, locked = builtins.open, {os.fspath(trained / "best.pt"), os.fspath(features)}

    def open_(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if os.fspath(path) in locked:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    for argv, needle in ((["--checkpoint", str(trained / "best.pt")], "best.pt"),
                         (["--checkpoint", str(trained / "last.pt")], "v.npy")):
        code, _, err = run(capsys, "predict", *argv, "--features", str(features), "--out", str(tmp_path / "p.json"))
        one_line_error(code, err, "ermission denied", needle)


def test_a_full_disk_while_a_checkpoint_is_written(tmp_path, monkeypatch) -> None:
    import rskp_plugin.checkpoint as checkpoint
    from rskp_plugin.errors import OutputError

    def full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    payload = {key: {} for key in checkpoint.REQUIRED_KEYS}
    with pytest.raises(OutputError, match="disk is probably full.*no checkpoint was left there"):
        checkpoint.save_checkpoint(tmp_path / "last.pt", payload)
    (tmp_path / "last.pt").write_bytes(b"old")
    with pytest.raises(OutputError, match="the previous one is intact"):
        checkpoint.save_checkpoint(tmp_path / "last.pt", payload)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_plot_dpi_out_of_range_and_many_threads(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    from rskp_plugin.engine.build import available_cores, resolve_threads

    code, _, err = run(capsys, "plot", "--run", str(tmp_path), "--dpi", "100000")
    one_line_error(code, err, "--dpi from 10 to 600")
    with pytest.warns(RuntimeWarning, match="spin-wait"):
        assert resolve_threads(available_cores() + 1) == available_cores() + 1


# ------------------------------------------------------------------------------------ resuming and config.yaml
def test_resume_refuses_an_edited_config_yaml_and_keeps_the_edit(tmp_path, capsys) -> None:
    folder = tmp_path / "run"
    assert run(capsys, "train", "--config", "quick", "--head", "wum", "--epochs", "1", "--output-dir", str(folder),
               *TINY)[0] == 0
    config = folder / "config.yaml"
    edited = config.read_text().replace("epochs: 1", "epochs: 3")
    config.write_text(edited)
    code, _, err = run(capsys, "train", "--resume", str(folder / "last.pt"), "--no-progress")
    one_line_error(code, err, "train.epochs: 3 in the file, 1 in the checkpoint", "--set train.epochs=")
    assert config.read_text() == edited  # the edit is never overwritten
    code, _, err = run(capsys, "train", "--resume", str(folder / "last.pt"), "--set", "train.epochs=3",
                       "--no-progress")
    assert code == 0, err


def test_a_relative_data_root_is_written_absolute(tmp_path, capsys, monkeypatch) -> None:
    from rskp_plugin.engine import load_experiment

    train, test = make_synthetic(seed=3, feature_dim=16, num_train=4, num_test=3, difficulty=0)
    monkeypatch.chdir(tmp_path)
    write_wtalc(train, test, tmp_path / "synth")
    assert run(capsys, "train", "--data", "wtalc", "--data-root", "synth", "--epochs", "1", "--output-dir", "run",
               *TINY)[0] == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_experiment(tmp_path / "run" / "config.yaml").data.root == str(tmp_path / "synth")
