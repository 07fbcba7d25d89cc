"""The run record: what a run leaves in its folder besides checkpoints (``config.yaml``, ``results.json``,
``metrics.jsonl``, TensorBoard events), the environment facts recorded with every result, and ``FitResult``, what
``Trainer.fit`` returns and ``results.json`` holds.

Every file is written atomically (a ``.tmp`` sibling, then a rename), so a killed run leaves the previous version.
``Trainer`` owns one ``RunRecord`` on rank 0 when the run has a folder.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Sequence

import attrs
import numpy as np
import torch

from ..errors import ConfigError, MissingDependencyError
from .config import ExperimentConfig, config_to_dict, config_to_yaml

#: The predictions a metrics line scores (``diagnostics.evaluate_branches``).
BRANCHES = ("fused", "main", "intra", "inter", "teacher")


@attrs.define
class FitResult:
    """What ``Trainer.fit`` returns.

    Attributes:
        best: the evaluation picked by ``train.selection`` (its ``test`` entry is what tables report).
        final: the evaluation after the last epoch.
        history: every evaluation, in order.
        selection: "test", "heldout" or "last": what ``best`` was selected on.
        epoch_times: seconds per training epoch (training only, no evaluation).
        eval_times: per evaluation (aligned with ``history``): {"train_s", "eval_s", "diagnostics_s"} seconds
            (kept out of ``history`` so that the history of a run is reproducible).
    """

    best: dict[str, Any]
    final: dict[str, Any]
    history: list[dict[str, Any]]
    selection: str
    epoch_times: list[float]
    eval_times: list[dict[str, float]] = attrs.field(factory=list)


def absolute_data_root(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with a relative ``data.root`` made absolute against the working folder (``~`` expanded)."""
    import attrs

    root = config.data.root
    if not root or os.path.isabs(os.path.expanduser(root)):
        return config
    return attrs.evolve(config, data=attrs.evolve(config.data, root=os.path.abspath(root)))


class RunRecord:
    """Writes the run folder's record files.

    Args:
        output_dir: the run folder (``train.output_dir``).
        tensorboard: also log every metrics line as TensorBoard scalars in ``<output_dir>/tensorboard``.
    """

    def __init__(self, output_dir: str | os.PathLike[str], *, tensorboard: bool = False) -> None:
        self.output_dir = Path(output_dir)
        self.tensorboard = TensorBoardLogger(self.output_dir / "tensorboard") if tensorboard else None

    def write_config(self, config: ExperimentConfig) -> Path:
        """``config.yaml``: the resolved config (the non-default values, and every ``rskp`` value, the head's recipe
        included), so that ``rskp train --config <run folder>/config.yaml`` trains the same run again, on another
        commit too (into the same output folder unless ``--output-dir`` says otherwise). A relative ``data.root``
        is written absolute (resolved against the working folder of the run), so the file means the same data
        wherever it is read from."""
        path = self.output_dir / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        config = absolute_data_root(config)
        header = (f"# The resolved config of this run: the values that differ from the defaults, and every rskp value\n"
                  f"# (defaults < the head's recipe, head.recipe < the config file < flags < --set).\n"
                  f"# Train it again: rskp train --config {path.as_posix()} --output-dir <new folder>\n")
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(header + config_to_yaml(config))
        os.replace(tmp, path)
        return path

    def write_metrics(self, history: Sequence[dict[str, Any]], times: Sequence[dict[str, float]],
                      *, log_last: bool = True) -> Path:
        """``metrics.jsonl`` from the whole history (see ``write_metrics``); with ``log_last`` the newest line
        goes to TensorBoard too."""
        path = write_metrics(self.output_dir / "metrics.jsonl", history, times)
        if log_last and self.tensorboard is not None:
            self.tensorboard.log(metrics_line(history[-1], times[-1]))
        return path

    def write_results(self, result: Any, config: ExperimentConfig, device: torch.device) -> Path:
        """``results.json``: best/final metrics, history, timings, environment and the resolved config.

        Args:
            result: the run's ``FitResult``.
        """
        payload = {
            "selection": result.selection,
            "best": result.best,
            "final": result.final,
            "history": result.history,
            "epoch_times": result.epoch_times,
            "eval_times": result.eval_times,
            "environment": environment(device),
            "config": config_to_dict(config),
        }
        path = self.output_dir / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
        os.replace(tmp, path)
        return path

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None


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


def write_metrics(path: str | os.PathLike[str], history: Sequence[dict[str, Any]],
                  times: Sequence[dict[str, float]] = ()) -> Path:
    """Write ``metrics.jsonl`` (one ``metrics_line`` per evaluation) atomically; rewritten from the history at
    every evaluation, so a resumed run's file holds exactly the evaluations its checkpoint knows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    times = list(times) + [{}] * (len(history) - len(times))
    tmp.write_text("".join(json.dumps(metrics_line(r, t)) + "\n" for r, t in zip(history, times)))
    os.replace(tmp, path)
    return path


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
                          "train.diagnostics=true and a train.output_dir to write one") from exc
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


class TensorBoardLogger:
    """Scalars of every metrics line in ``<run>/tensorboard`` (``train.tensorboard``).

    The writer opens at the first line with ``purge_step`` at its epoch: a resumed run drops the events its killed
    predecessor logged after the checkpoint, so no epoch is shown twice.
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise MissingDependencyError(
                "train.tensorboard is true but the tensorboard package is not installed: pip install tensorboard, "
                "or set train.tensorboard=false (metrics.jsonl is written either way)"
            ) from exc
        self._open = lambda step: SummaryWriter(log_dir=os.fspath(log_dir), purge_step=step)
        self.writer: Any = None

    def log(self, line: dict[str, Any]) -> None:
        """Add one ``metrics_line``: loss/<term>, avg/<branch>, cmap/<branch>, heldout/avg."""
        step = int(line["epoch"])
        if self.writer is None:
            self.writer = self._open(step)
        if line.get("train_loss") is not None:
            self.writer.add_scalar("loss/total", line["train_loss"], step)
        for name, value in line.get("losses", {}).items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        for name, branch in line["branches"].items():
            if branch is not None:
                self.writer.add_scalar(f"avg/{name}", branch["avg"], step)
                self.writer.add_scalar(f"cmap/{name}", branch["cmap"], step)
        if line.get("heldout"):
            self.writer.add_scalar("heldout/avg", line["heldout"]["avg"], step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def environment(device: torch.device | None = None) -> dict[str, Any]:
    """Versions and machine facts recorded with every result: library, torch, head versions, device, git commit."""
    import rskp_plugin

    env: dict[str, Any] = {
        "rskp_plugin": rskp_plugin.__version__,
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
        "device": str(device) if device is not None else "cpu",
        "git_commit": git_commit(),
        "threads": torch.get_num_threads(),
    }
    if device is not None and device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    try:
        from ..plugins import head_specs

        env["heads"] = {name: spec.distribution for name, spec in head_specs().items()}
    except Exception:  # a broken plugin must not stop a result from being written
        env["heads"] = {}
    return env


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
