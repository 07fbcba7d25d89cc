"""The run record: what a run leaves in its folder besides checkpoints (``config.yaml``, ``results.json``, and
the metric logs of ``train.loggers``: ``engine.loggers``), the environment facts recorded with every result, and
``FitResult``, what ``Trainer.fit`` returns and ``results.json`` holds.

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

from .config import ExperimentConfig, config_to_dict, config_to_yaml
from .loggers import (  # noqa: F401 - re-exported: the metric logs lived here
    BRANCHES, RunLog, TensorBoardLogger, make_loggers, metrics_line, read_metrics, write_metrics,
)



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
        loggers: names of ``engine.loggers.LOGGERS`` (``train.loggers``) writing the metric logs.
    """

    def __init__(self, output_dir: str | os.PathLike[str], *, loggers: Sequence[str] = ("jsonl", "csv")) -> None:
        self.output_dir = Path(output_dir)
        self.loggers = make_loggers(self.output_dir, loggers)

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

    def log(self, log: RunLog, *, resumed: bool = False) -> None:
        """Give every logger the run so far (after an epoch; ``resumed``: once, as the checkpoint knows it)."""
        for logger in self.loggers:
            logger.update(log, resumed=resumed)

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
        for logger in self.loggers:
            logger.close()
        self.loggers = []


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
