"""Metric logs (``train.loggers``): metrics.csv one row per epoch, a per-epoch line off a terminal, TensorBoard as an
optional extra, and resumed runs that repeat no epoch."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys

import pytest
from _tiny import tiny_dataset
from test_engine import config

from rskp_plugin.data import collate
from rskp_plugin.engine import Datasets, Trainer
from rskp_plugin.engine.loggers import CsvLogger, RunLog, csv_rows
from rskp_plugin.errors import ConfigError, MissingDependencyError


@pytest.fixture(scope="module")
def datasets() -> Datasets:
    return Datasets(train=tiny_dataset(10, 0, "train"), test=tiny_dataset(6, 1, "test"),
                    heldout=tiny_dataset(4, 2, "heldout"), collate=collate)


def _rows(path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


def test_csv_has_a_row_per_epoch_with_losses_every_epoch_and_metrics_at_evaluations(datasets, tmp_path) -> None:
    cfg = config("facnet", "train.epochs=5", "train.eval_interval=2", "rskp.memory.warmup_epochs=1",
                 f"train.output_dir={tmp_path}")
    fit = Trainer(cfg, datasets=datasets, progress=False).fit()
    rows = _rows(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4", "5"]
    header = list(rows[0])
    assert header[:2] == ["epoch", "train_loss"] and "train_s" in header and "memory_ready" in header
    losses = [c for c in header if c.startswith("loss/")]
    assert "loss/cls/inter" in losses and header[2 : 2 + len(losses)] == losses  # the terms side by side
    assert rows[0]["loss/cls/inter"] == "" and rows[-1]["loss/cls/inter"]  # the inter branch joins after warm-up
    assert {"loss/cls/main", "test_avg", "test_cmap", "test_map@0.1", "test_map@0.7", "heldout_avg", "heldout_cmap",
            "main_avg", "intra_avg", "selected"} <= set(header)
    assert all(float(r["train_loss"]) > 0 and r["loss/cls/main"] for r in rows)  # every epoch
    evaluated = [r["epoch"] for r in rows if r["test_avg"]]
    assert evaluated == ["2", "4", "5"] == [str(h["epoch"]) for h in fit.history]
    for record in fit.history:
        row = rows[record["epoch"] - 1]
        assert float(row["test_avg"]) == pytest.approx(record["test"]["avg_map_percent"])
        assert float(row["heldout_avg"]) == pytest.approx(record["heldout"]["avg_map_percent"])
        assert float(row["train_loss"]) == pytest.approx(record["train_loss"])
    assert [r["epoch"] for r in rows if r["selected"] == "heldout"] == [str(fit.best["epoch"])]
    assert [r["memory_ready"] for r in rows] == ["False", "True", "True", "True", "True"]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [2, 4, 5]  # the JSONL log as before: one line per evaluation


def test_loggers_are_chosen_and_checked(datasets, tmp_path) -> None:
    cfg = config("stpn", "train.epochs=1", "train.loggers=[csv]", "train.diagnostics=false",
                 f"train.output_dir={tmp_path}")
    Trainer(cfg, datasets=datasets, progress=False).fit()
    assert (tmp_path / "metrics.csv").exists() and not (tmp_path / "metrics.jsonl").exists()
    assert "loss/cls/main" not in _rows(tmp_path / "metrics.csv")[0]  # no terms without diagnostics
    assert config("stpn", "train.loggers=[]").train.active_loggers == ()
    assert config("stpn", "train.tensorboard=true").train.active_loggers == ("jsonl", "csv", "tensorboard")
    for bad in ("train.loggers=[wandb]", "train.loggers=[csv, csv]"):
        with pytest.raises(ConfigError, match="train.loggers must be a list of distinct names from jsonl, csv"):
            config("stpn", bad)


def test_not_on_a_terminal_every_epoch_prints_its_loss(datasets) -> None:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    cfg = config("facnet", "train.epochs=3", "train.eval_interval=2", "rskp.memory.warmup_epochs=0")
    Trainer(cfg, datasets=datasets, progress=True, console=console).fit()
    lines = out.getvalue().strip().splitlines()
    assert [line.split(",")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "loss " in lines[0] and "cls/main" in lines[0] and lines[0].endswith(" s")  # the terms of the loss
    assert "test AVG" in lines[1] and "test AVG" not in lines[0]


def test_a_resumed_run_rewrites_the_csv_as_its_checkpoint_knows_it(datasets, tmp_path) -> None:
    cfg = config("stpn", "train.epochs=4", "train.eval_interval=2", "rskp.memory.warmup_epochs=1",
                 f"train.output_dir={tmp_path / 'run'}")
    first = Trainer(cfg, datasets=datasets, progress=False)
    first.fit(stop_after=2)
    shutil.copy(tmp_path / "run" / "last.pt", tmp_path / "epoch2.pt")
    first.fit(stop_after=3)  # "killed" after epoch 3 was logged: its last.pt is put back to epoch 2's
    shutil.copy(tmp_path / "epoch2.pt", tmp_path / "run" / "last.pt")
    assert [r["epoch"] for r in _rows(tmp_path / "run" / "metrics.csv")] == ["1", "2", "3"]
    resumed = Trainer.resume(tmp_path / "run" / "last.pt", datasets=datasets, progress=False)
    assert [r["epoch"] for r in _rows(tmp_path / "run" / "metrics.csv")] == ["1", "2"]
    resumed.fit()
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"] and all(r["train_loss"] for r in rows)


def test_csv_rows_of_a_log_without_evaluations() -> None:
    log = RunLog([{"epoch": 1, "train_loss": 0.5, "losses": {"a": 0.1}, "train_s": 1.0, "memory_ready": False}], [])
    assert csv_rows(log) == [{"epoch": 1, "train_loss": 0.5, "loss/a": 0.1, "train_s": 1.0, "memory_ready": False}]


def test_csv_logger_needs_no_tensorboard(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    CsvLogger(tmp_path).update(RunLog([{"epoch": 1, "train_loss": 0.5}], []))
    assert (tmp_path / "metrics.csv").read_text() == "epoch,train_loss,train_s,memory_ready\n1,0.5,,\n"


def test_tensorboard_logger_writes_loss_every_epoch(datasets, tmp_path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed: pip install "
                                              '"rskp-plugin[tensorboard]"')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = config("facnet", "train.epochs=3", "train.eval_interval=3", "train.loggers=[tensorboard]",
                 f"train.output_dir={tmp_path}")
    Trainer(cfg, datasets=datasets, progress=False).fit()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss/total")] == [1, 2, 3]
    assert [e.step for e in events.Scalars("avg/fused")] == [3]


def test_without_tensorboard_the_logger_says_how_to_install_it(datasets, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    cfg = config("facnet", "train.epochs=1", "train.loggers=[jsonl, tensorboard]", f"train.output_dir={tmp_path}")
    with pytest.raises(MissingDependencyError, match=r'pip install "rskp-plugin\[tensorboard\]"'):
        Trainer(cfg, datasets=datasets, progress=False)
