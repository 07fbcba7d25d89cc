"""Checkpoints: atomic writes, validation of foreign/truncated files, RNG state round trips."""

from __future__ import annotations

import argparse
import random

import numpy as np
import pytest
import torch

from rskp_plugin.checkpoint import (
    FORMAT_VERSION,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from rskp_plugin.errors import CheckpointError


def _payload(epoch: int = 3) -> dict:
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    return {
        "epoch": epoch, "config": {"train": {"epochs": 10, "tiou": [0.1, 0.5]}}, "model": model.state_dict(),
        "optimizer": opt.state_dict(), "rng": capture_rng_state(), "trainer": {"history": [], "best": None},
        "meta": {"class_names": ["a", "b"], "feature_dim": 4, "snippets_per_second": 1.5625},
    }


def test_round_trip_keeps_tensors_and_values(tmp_path) -> None:
    payload = _payload()
    path = save_checkpoint(tmp_path / "run" / "last.pt", payload)
    data = load_checkpoint(path)
    assert data["epoch"] == 3 and data["format_version"] == FORMAT_VERSION
    assert data["config"] == payload["config"] and data["meta"] == payload["meta"]
    for key, value in payload["model"].items():
        assert torch.equal(data["model"][key], value)
    assert data["optimizer"]["state"][0]["step"] == payload["optimizer"]["state"][0]["step"]
    assert load_checkpoint(tmp_path / "run")["epoch"] == 3  # a run folder means its last.pt
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["last.pt"]  # no temp file left behind


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    path = save_checkpoint(tmp_path / "last.pt", _payload(epoch=1))

    def broken_save(obj, fh):  # writes half a file, then the process "dies"
        fh.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _payload(epoch=2))
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_truncated_file_is_a_clear_error(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "last.pt", _payload())
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        {"state_dict": {"w": torch.zeros(2)}},  # another program's torch file
        [1, 2, 3],
        {"format": "rskp-checkpoint", "format_version": 1, "epoch": 1},  # ours, but fields missing
    ],
)
def test_foreign_files_are_rejected(tmp_path, content) -> None:
    path = tmp_path / "foreign.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="not an rskp checkpoint|lacks the fields"):
        load_checkpoint(path)


def test_pickled_objects_are_not_loaded(tmp_path) -> None:
    path = tmp_path / "object.pt"
    # An arbitrary Python object: only a full (code-running) unpickle could load it.
    torch.save({"format": "rskp-checkpoint", "obj": argparse.Namespace(a=1)}, path)
    with pytest.raises(CheckpointError, match="not an rskp checkpoint"):
        load_checkpoint(path)


def test_random_bytes_and_missing_files(tmp_path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(CheckpointError, match="is not an rskp checkpoint") as info:
        load_checkpoint(path)
    assert "run code" not in str(info.value) and "pickle" not in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_newer_format_version_asks_for_an_upgrade(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "last.pt", _payload())
    data = torch.load(path, weights_only=True)
    data["format_version"] = FORMAT_VERSION + 1
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="Upgrade"):
        load_checkpoint(path)


def test_rng_states_round_trip(tmp_path) -> None:
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    path = save_checkpoint(tmp_path / "c.pt", {**_payload(), "rng": capture_rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng_state(load_checkpoint(path)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_saving_without_required_fields_fails(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="missing fields optimizer"):
        save_checkpoint(tmp_path / "x.pt", {k: v for k, v in _payload().items() if k != "optimizer"})


def test_a_plain_pickle_is_not_read_at_all(tmp_path) -> None:
    import pickle

    class Payload:  # unpickling this would create a file
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match="not an rskp checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "ran").exists()


def test_a_failed_write_is_an_output_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    import errno

    from rskp_plugin.errors import OutputError

    path = save_checkpoint(tmp_path / "last.pt", _payload(epoch=1))

    def disk_full(obj, fh):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OutputError, match=r"cannot write checkpoint .*last.pt.*No space left.*previous one is intact"):
        save_checkpoint(path, _payload(epoch=2))
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_checkpoint_whose_head_is_not_installed_names_its_distribution(tmp_path) -> None:
    from rskp_plugin.checkpoint import check_head_installed, head_record
    from rskp_plugin.errors import UnknownHeadError

    data = {**_payload(), "config": {"head": {"name": "ghost"}}}
    data["meta"] = {**data["meta"], "head": {"name": "ghost", "distribution": "rskp-head-ghost", "version": "1.2"}}
    with pytest.raises(UnknownHeadError, match=r'head "ghost".*not installed.*pip install \'rskp-head-ghost==1.2\''):
        check_head_installed(data, tmp_path / "best.pt")
    data["meta"]["head"] = {"name": "ghost", "distribution": "", "version": ""}
    with pytest.raises(UnknownHeadError, match="registered in code"):
        check_head_installed(data, tmp_path / "best.pt")
    del data["meta"]["head"]
    with pytest.raises(UnknownHeadError, match="install the plugin that provides it"):
        check_head_installed(data, tmp_path / "best.pt")
    import rskp_plugin

    assert head_record("wum") == {"name": "wum", "distribution": "rskp-plugin", "version": rskp_plugin.__version__}


def test_migrations_run_for_the_files_format_version_and_later_only(monkeypatch) -> None:
    """A migration keyed by version v upgrades files written at v or earlier; a newer file skips it."""
    from rskp_plugin import checkpoint

    seen: list[tuple[int, int]] = []
    step = lambda key: lambda data: seen.append((data["format_version"], key)) or {**data, "epoch": data["epoch"] + 1}
    monkeypatch.setattr(checkpoint, "MIGRATIONS", {2: (step(2),), 1: (step(1),)})
    assert checkpoint.migrate({"format_version": 1, "epoch": 0})["epoch"] == 2
    assert checkpoint.migrate({"format_version": 2, "epoch": 0})["epoch"] == 1
    assert checkpoint.migrate({"format_version": 3, "epoch": 0})["epoch"] == 0
    assert seen == [(1, 1), (1, 2), (2, 2)]


def test_a_version_1_checkpoint_reads_as_today(tmp_path) -> None:
    """train.amp as a bool and evaluation records without units (format version 1) are upgraded on load."""
    payload = {**_payload(), "format_version": 1}
    payload["config"]["train"]["amp"] = True
    record = {"epoch": 1, "test": {"tiou": [0.5], "map": [1.0], "average": 1.0, "cmap": 2.0, "detections": 3}}
    payload["trainer"] = {"history": [record], "best": record}
    data = load_checkpoint(save_checkpoint(tmp_path / "old.pt", payload))
    assert data["config"]["train"]["amp"] == "auto"
    for got in (data["trainer"]["history"][0], data["trainer"]["best"]):
        assert got["test"] == {"tiou": [0.5], "map_percent": [1.0], "avg_map_percent": 1.0, "cmap_percent": 2.0,
                               "detections": 3}


def test_a_checkpoint_that_does_not_fit_names_the_tensors_and_their_shapes(tmp_path) -> None:
    import torch

    from rskp_plugin.checkpoint import state_mismatch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    saved = dict(model.state_dict())
    saved["0.weight"] = torch.zeros(5, 4)
    del saved["1.bias"]
    saved["2.weight"] = torch.zeros(1)
    text = state_mismatch(model, saved)
    assert "0.weight (5, 4) in the file, (3, 4) in the model" in text
    assert "missing from the file: 1.bias" in text and "not in the model: 2.weight" in text


def test_a_version_3_checkpoint_keeps_its_walk_settings(tmp_path) -> None:
    """Up to format 3 the walk's w and lambda sat at the top of ``rskp``; they load as ``rskp.propagation``'s."""
    from rskp_plugin.config import RSKPConfig
    from rskp_plugin.config_io import from_mapping

    payload = {**_payload(), "format_version": 3}
    payload["config"]["rskp"] = {"walk_weight": 0.25, "walk_temperature": 7.0, "propagation": {"steps": 4}}
    data = load_checkpoint(save_checkpoint(tmp_path / "old.pt", payload))
    rskp = data["config"]["rskp"]
    assert rskp["propagation"] == {"steps": 4, "weight": 0.25, "temperature": 7.0} and "walk_weight" not in rskp
    assert from_mapping(RSKPConfig, rskp).propagation.weight == 0.25
