"""Metric logs of a run (``train.loggers``): ``metrics.jsonl``, ``metrics.csv`` and TensorBoard events.

Every logger gets the whole run so far after every epoch (a ``RunLog``: one entry per trained epoch, one
``metrics_line`` per evaluation) and writes what it keeps from it:

* ``jsonl`` — ``metrics.jsonl``, one JSON object per evaluation (``metrics_line``; README "Diagnostics"), read by
  ``rskp plot`` and ``rskp bench``;
* ``csv`` — ``metrics.csv``, one row per epoch: the training loss and its terms every epoch, the evaluation metrics
  (test and held-out AVG and classification mAP, mAP per tIoU, every branch's AVG) at evaluation epochs, and the
  row the run's selection picks so far;
* ``tensorboard`` — scalars in ``tensorboard/`` (``pip install "rskp-plugin[tensorboard]"``): ``loss/*`` every
  epoch, ``avg/*``, ``cmap/*``, ``heldout/avg`` at evaluation epochs.

Files are rewritten atomically from the run's record, so a resumed run's files hold exactly the epochs its
checkpoint knows (none twice); TensorBoard drops the events of a killed run past the checkpoint (``purge_step``).
A logger is any object with ``update(log, *, resumed=False)`` and ``close()``; ``LOGGERS`` maps names to factories
taking the run folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import attrs

from ..errors import ConfigError, MissingDependencyError

#: The predictions a metrics line scores (``diagnostics.evaluate_branches``).
BRANCHES = ("fused", "main", "intra", "inter", "teacher")


@attrs.frozen
class RunLog:
    """The run so far, as the loggers see it after an epoch.

    Attributes:
        epochs: one dict per trained epoch: ``epoch``, ``train_loss`` (mean per video), ``losses`` (the mean of
            each loss term; empty without ``train.diagnostics``), ``train_s`` (seconds), ``memory_ready``.
        evaluations: one ``metrics_line`` per evaluation, in order.
        selection: ``train.selection``.
        best_epoch: the evaluation epoch the selection picks so far (None before the first evaluation).
    """

    epochs: Sequence[dict[str, Any]]
    evaluations: Sequence[dict[str, Any]]
    selection: str = "heldout"
    best_epoch: int | None = None


class MetricsLogger(Protocol):
    """What ``train.loggers`` names: told the whole run after every epoch (``resumed``: once when a run continues
    from a checkpoint, before training)."""

    def update(self, log: RunLog, *, resumed: bool = False) -> None: ...

    def close(self) -> None: ...


def epoch_log_of(history: Sequence[dict[str, Any]], epoch_times: Sequence[float]) -> list[dict[str, Any]]:
    """The per-epoch entries of a run whose checkpoint predates them: seconds every epoch, the loss and its terms
    at evaluation epochs only (what the checkpoint knows)."""
    records = {r["epoch"]: r for r in history}
    out = []
    for epoch, seconds in enumerate(epoch_times, 1):
        record = records.get(epoch, {})
        diag = record.get("diagnostics") or {}
        out.append({"epoch": epoch, "train_loss": record.get("train_loss"), "losses": dict(diag.get("losses") or {}),
                    "train_s": seconds, "memory_ready": diag.get("memory_ready")})
    return out


def metrics_line(record: dict[str, Any], timing: dict[str, float] | None = None) -> dict[str, Any]:
    """One line of ``metrics.jsonl`` from a ``Trainer`` history record and its ``eval_times`` entry (README.md
    "Diagnostics")."""
    diag = record.get("diagnostics") or {}
    branches = diag.get("branches") or {name: None for name in BRANCHES}
    if branches.get("fused") is None and "test" in record:
        test = record["test"]
        branches = {**branches, "fused": {
            "avg": test["avg_map_percent"],
            "per_tiou": {f"{t:g}": m for t, m in zip(test["tiou"], test["map_percent"])},
            "cmap": test["cmap_percent"], "detections": test["detections"],
        }}
    heldout = record.get("heldout")
    return {
        "epoch": record["epoch"],
        "train_loss": record.get("train_loss"),
        "losses": diag.get("losses", {}),
        "memory_ready": diag.get("memory_ready"),
        "eval_set": "test",
        "branches": branches,
        "heldout": {"avg": heldout["avg_map_percent"], "cmap": heldout["cmap_percent"]} if heldout else None,
        "teacher_rule": diag.get("teacher_rule"),
        "inter_classes": diag.get("inter_classes"),
        "time": dict(timing or {}),
    }


def _replace(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_metrics(path: str | os.PathLike[str], history: Sequence[dict[str, Any]],
                  times: Sequence[dict[str, float]] = ()) -> Path:
    """Write ``metrics.jsonl`` (one ``metrics_line`` per evaluation) atomically; rewritten from the history at
    every evaluation, so a resumed run's file holds exactly the evaluations its checkpoint knows."""
    times = list(times) + [{}] * (len(history) - len(times))
    return _replace(Path(path), "".join(json.dumps(metrics_line(r, t)) + "\n" for r, t in zip(history, times)))


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file, in order.

    Raises:
        ConfigError: the file is missing or a line is not a JSON object with an ``epoch``.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the metrics file {os.fspath(path)!r} ({exc.strerror}); train with "
                          "a train.output_dir and jsonl in train.loggers to write one") from exc
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{os.fspath(path)}:{number} is not JSON ({exc.msg}); was the file cut short?") from exc
        if not isinstance(record, dict) or "epoch" not in record:
            raise ConfigError(f"{os.fspath(path)}:{number} is not a metrics record (no 'epoch')")
        records.append(record)
    return records


class JsonlLogger:
    """``metrics.jsonl``: one ``metrics_line`` per evaluation, rewritten when an evaluation was added."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / "metrics.jsonl"
        self._written = -1

    def update(self, log: RunLog, *, resumed: bool = False) -> None:
        if resumed or len(log.evaluations) != self._written:
            _replace(self.path, "".join(json.dumps(line) + "\n" for line in log.evaluations))
            self._written = len(log.evaluations)

    def close(self) -> None:
        pass


def csv_rows(log: RunLog) -> list[dict[str, Any]]:
    """The rows of ``metrics.csv``: one per epoch, evaluation columns filled at evaluation epochs."""
    evaluations = {line["epoch"]: line for line in log.evaluations}
    rows = []
    for entry in log.epochs:
        row: dict[str, Any] = {"epoch": entry["epoch"], "train_loss": entry.get("train_loss")}
        row.update({f"loss/{k}": v for k, v in (entry.get("losses") or {}).items()})
        row.update({"train_s": entry.get("train_s"), "memory_ready": entry.get("memory_ready")})
        line = evaluations.get(entry["epoch"])
        if line is not None:
            fused = line["branches"].get("fused") or {}
            row.update({"test_avg": fused.get("avg"), "test_cmap": fused.get("cmap")})
            row.update({f"test_map@{t}": m for t, m in (fused.get("per_tiou") or {}).items()})
            if line.get("heldout"):
                row.update({"heldout_avg": line["heldout"]["avg"], "heldout_cmap": line["heldout"]["cmap"]})
            for name, branch in line["branches"].items():
                if name != "fused" and branch is not None:
                    row.update({f"{name}_avg": branch["avg"], f"{name}_cmap": branch["cmap"]})
            row["selected"] = log.selection if entry["epoch"] == log.best_epoch else ""
        rows.append(row)
    return rows


class CsvLogger:
    """``metrics.csv``: one row per epoch (``csv_rows``), rewritten after every epoch; the epoch, the loss and its
    terms first, then the other columns in order of first appearance, empty where an epoch has no value."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / "metrics.csv"

    def update(self, log: RunLog, *, resumed: bool = False) -> None:
        rows = csv_rows(log)
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        losses = [c for c in seen if c.startswith("loss/")]  # the loss terms side by side, whenever they start
        columns = dict.fromkeys(["epoch", "train_loss", *losses, *seen])
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(columns), restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        _replace(self.path, out.getvalue())

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Scalars in ``<run>/tensorboard``: ``loss/total`` and ``loss/<term>`` every epoch, ``avg/<branch>``,
    ``cmap/<branch>`` and ``heldout/avg`` at evaluation epochs.

    The writer opens at the first epoch it logs with ``purge_step`` at that epoch: a resumed run drops the events
    its killed predecessor logged after the checkpoint, so no epoch is shown twice.
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise MissingDependencyError(
                "train.loggers names tensorboard (or train.tensorboard is true) but the tensorboard package is not "
                'installed: pip install "rskp-plugin[tensorboard]" (or pip install tensorboard), or leave it out '
                "(metrics.jsonl and metrics.csv need nothing more)"
            ) from exc
        self._open = lambda step: SummaryWriter(log_dir=os.fspath(log_dir), purge_step=step)
        self.writer: Any = None
        self._epoch = 0  # the last epoch logged

    def update(self, log: RunLog, *, resumed: bool = False) -> None:
        if resumed:
            self._epoch = log.epochs[-1]["epoch"] if log.epochs else 0
            return
        evaluations = {line["epoch"]: line for line in log.evaluations}
        for entry in log.epochs:
            if entry["epoch"] > self._epoch:
                self.log_epoch(entry, evaluations.get(entry["epoch"]))
                self._epoch = entry["epoch"]
        if self.writer is not None:
            self.writer.flush()

    def log_epoch(self, entry: dict[str, Any], line: dict[str, Any] | None) -> None:
        """Add the scalars of one epoch (and its ``metrics_line`` at an evaluation epoch)."""
        step = int(entry["epoch"])
        if self.writer is None:
            self.writer = self._open(step)
        if entry.get("train_loss") is not None:
            self.writer.add_scalar("loss/total", entry["train_loss"], step)
        for name, value in (entry.get("losses") or {}).items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        if line is None:
            return
        for name, branch in line["branches"].items():
            if branch is not None:
                self.writer.add_scalar(f"avg/{name}", branch["avg"], step)
                self.writer.add_scalar(f"cmap/{name}", branch["cmap"], step)
        if line.get("heldout"):
            self.writer.add_scalar("heldout/avg", line["heldout"]["avg"], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


#: ``train.loggers`` names -> a factory taking the run folder.
LOGGERS: dict[str, Callable[[Path], MetricsLogger]] = {
    "jsonl": JsonlLogger,
    "csv": CsvLogger,
    "tensorboard": lambda folder: TensorBoardLogger(Path(folder) / "tensorboard"),
}


def make_loggers(folder: str | os.PathLike[str], names: Sequence[str]) -> list[MetricsLogger]:
    """The loggers ``names`` writing into run folder ``folder``, in that order."""
    return [LOGGERS[name](Path(folder)) for name in names]
