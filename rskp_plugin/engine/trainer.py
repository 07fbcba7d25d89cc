"""The trainer: the official RSKP recipe, batched, seeded, resumable; ``Trainer`` ties the parts together.

    engine/strategy.py   one process or data-parallel: sharding, gradient sums, memory steps, process group
    engine/loop.py       the step loop: one epoch of accumulated optimiser steps over padded micro-batches
    engine/warmup.py     the RSKP warm-up schedule (a callback: when the memory bank is filled)
    engine/record.py     the run record: config.yaml, results.json, environment; engine/loggers.py the metric logs
    engine/resume.py     the config a resumed run trains with; rskp_plugin/checkpoint.py: the file and migrations
    engine/progress.py   the progress bars

``Trainer`` builds data and model, runs ``fit`` (epochs, callbacks, evaluation and selection, checkpoints) and
keeps what a checkpoint holds of the run.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ..checkpoint import (
    capture_rng_state, check_head_installed, head_record, load_checkpoint, restore_training, save_checkpoint,
    training_payload,
)
from ..errors import ConfigError
from . import loop
from .build import Datasets, build_datasets, build_model, resolve_device, seed_everything, set_threads
from .config import ExperimentConfig, config_to_dict, expand_output_dir
from .diagnostics import evaluate_branches
from .ema import WeightAverage, averaged
from .inference import EvalResult, evaluate_model
from .output import prepare_run_dir
from .loggers import RunLog, epoch_log_of, metrics_line
from .progress import epoch_line, evaluation_line, open_progress, progress_label
from .record import FitResult, RunRecord, absolute_data_root, environment
from .resume import resumed_config
from .strategy import make_strategy
from .warmup import Callback, MemoryWarmup

__all__ = ["Trainer"]


class Trainer:
    """Trains one head (alone or wrapped by RSKP) with an ``ExperimentConfig``.

    Args:
        config: the experiment.
        datasets: pre-built train/held-out/test sets (the benchmark shares them between runs); built from
            ``config.data`` when None.
        progress: show rich progress bars for epochs and evaluation passes; a ``rich.progress.Progress`` that is
            already running (the benchmark's) gets the bars as extra tasks.
        console: rich console for progress and messages (default: a new one on stderr).
        overwrite: replace a run already in ``train.output_dir``; without it such a folder is an ``OutputError``
            (checked before any work, like a folder that cannot be written).
        resume_from: the checkpoint this trainer continues (``resume`` sets it): its folder may hold the run.

    Launched by torchrun with more than one process (``WORLD_SIZE`` > 1), the trainer joins the process group
    (gloo on the CPU, nccl on CUDA with one GPU per process) and trains data-parallel: see ``engine.strategy``
    and ``engine.distributed``. Rank 0 alone evaluates, writes the run folder and shows progress; ``fit``
    destroys a process group the trainer created once it is done.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        datasets: Datasets | None = None,
        progress: Any = True,
        console: Any = None,
        overwrite: bool = False,
        resume_from: str | os.PathLike[str] | None = None,
    ) -> None:
        from rich.console import Console

        # placeholders left by a config built in code; a relative data.root made absolute, so that the checkpoint
        # and config.yaml name the same data wherever the run is resumed or read from
        self.config = config = absolute_data_root(expand_output_dir(config))
        self.console = console if console is not None else Console(stderr=True)
        set_threads(config.train.threads)  # before any torch work: see resolve_threads
        self.strategy = make_strategy(resolve_device(config.train.device))  # one process or data-parallel
        self.device, self.rank, self.world_size = self.strategy.device, self.strategy.rank, self.strategy.world_size
        self.callbacks: list[Callback] = [MemoryWarmup(config)]  # called on every rank after each epoch
        self.output_dir = Path(config.train.output_dir) if config.train.output_dir else None
        if "tensorboard" in config.train.active_loggers and self.output_dir is None:
            raise ConfigError("the tensorboard logger needs a run folder: set train.output_dir (or --output-dir)")
        self._record: RunRecord | None = None  # config.yaml, results.json, the metric logs (train.loggers)
        self._run_lock = None  # held on the run folder until close(): a second process is refused
        if self.output_dir is not None and self.is_main_process:  # before any work; rank 0 alone writes the folder
            self._run_lock = prepare_run_dir(self.output_dir, overwrite=overwrite,
                                             continuing=Path(resume_from) if resume_from else None)
            # after prepare_run_dir: an old run's events are gone
            self._record = RunRecord(self.output_dir, loggers=config.train.active_loggers)
        # (path, epoch) of the newest last.pt written or resumed from; where an interrupted run continues
        self.last_checkpoint: tuple[Path, int] | None = None
        self.show_progress = progress if self.is_main_process else False
        self.datasets = datasets if datasets is not None else build_datasets(config)
        if config.train.selection == "heldout" and self.datasets.heldout is None:
            raise ConfigError(
                "train.selection is heldout but the datasets given hold no held-out part: build them with "
                "build_datasets(config) (it holds out train.heldout_fraction of the training videos), pass "
                "Datasets(..., heldout=...), or choose --selection test or last")
        seed_everything(config.train.seed)  # the same seed on every rank: same data order, same initial weights
        train = self.datasets.train
        self.model = build_model(config, num_classes=len(train.class_names), feature_dim=self.datasets.feature_dim)
        self.model.to(self.device)
        self.strategy.sync_module(self.model)
        self.ema = WeightAverage(self.model, config.train.ema) if config.train.ema else None  # train.ema
        self._rank_rng: list[dict[str, Any]] | None = None  # every rank's RNG state, for checkpoints
        opt = config.optimizer
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay
        )
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.epoch_times: list[float] = []
        self.eval_times: list[dict[str, float]] = []  # per history record: training/evaluation/diagnostics seconds
        self.epoch_losses: dict[str, float] = {}  # mean loss terms of the last epoch trained (train.diagnostics)
        self.epoch_log: list[dict[str, Any]] = []  # per epoch: loss, its terms, seconds (engine.loggers.RunLog)

    @property
    def is_main_process(self) -> bool:
        """True on rank 0 (and in a single process): the rank that evaluates, writes files and prints."""
        return self.rank == 0

    # ------------------------------------------------------------------------------------------ training
    @property
    def amp_enabled(self) -> bool:
        """Whether forward passes run under bfloat16 autocast: ``train.amp`` "bf16" anywhere, "auto" on CUDA."""
        mode = self.config.train.amp
        return mode == "bf16" or (mode == "auto" and self.device.type == "cuda")

    def autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on this trainer's device (CPU included) when ``amp_enabled``; else a no-op."""
        if self.amp_enabled:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Indices of the training videos in the order epoch ``epoch`` visits them (a function of seed, epoch)."""
        return loop.epoch_order(self.config.train.seed, len(self.datasets.train.videos), epoch)

    def train_epoch(self, epoch: int, progress: Any = None) -> float:
        """One pass over the training videos with accumulation (``engine.loop.train_epoch``); returns the mean
        per-video loss, over every process's videos."""
        loss, losses = loop.train_epoch(self, epoch, progress)
        if losses is not None:
            self.epoch_losses = losses
        return loss

    def _to_device(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        return loop.to_device(batch, self.device)

    @property
    def memory_due(self) -> bool:
        """Whether the memory bank must be filled now (after warm-up epoch index ``warmup_epochs``)."""
        return self._warmup.due(self.model, self.epoch)

    def initialize_memory(self) -> None:
        """The warm-up pass filling the memory bank (``MemoryWarmup.fill``)."""
        self._warmup.fill(self)

    @property
    def _warmup(self) -> MemoryWarmup:
        return next(c for c in self.callbacks if isinstance(c, MemoryWarmup))

    # ------------------------------------------------------------------------------------------ evaluation
    def evaluate(self, which: str = "test", progress: Any = None) -> EvalResult:
        """Detection and classification mAP on ``which`` ("test" or "heldout")."""
        dataset = self.datasets.test if which == "test" else self.datasets.heldout
        if dataset is None:
            raise ConfigError("no held-out split: set train.selection=heldout to hold out part of the training set")
        t = self.config.train
        with self.autocast():
            return evaluate_model(
                self.model, dataset, collate=self.datasets.collate, device=self.device, batch_size=t.eval_batch_size,
                tiou=t.tiou, protocol=t.protocol, progress=progress, label=which,
            )

    def evaluate_branches(self, progress: Any = None) -> tuple[EvalResult, dict[str, Any]]:
        """``evaluate("test")`` (the same numbers) plus every branch's metrics (``diagnostics.evaluate_branches``)."""
        t = self.config.train
        with self.autocast():
            return evaluate_branches(
                self.model, self.datasets.test, collate=self.datasets.collate, device=self.device,
                batch_size=t.eval_batch_size, tiou=t.tiou, protocol=t.protocol, progress=progress,
            )

    def _evaluate_all(self, progress: Any) -> dict[str, Any]:
        started = time.perf_counter()
        t = self.config.train
        if t.diagnostics:
            test, info = self.evaluate_branches(progress)
        else:
            test, info = self.evaluate("test", progress), {}
        record: dict[str, Any] = {"epoch": self.epoch, "test": test.to_dict()}
        if self.datasets.heldout is not None:
            record["heldout"] = self.evaluate("heldout", progress).to_dict()
        record["diagnostics"] = {
            "losses": dict(self.epoch_losses) if t.diagnostics else {},
            "memory_ready": bool(self.model.memory_ready),
            "branches": info.get("branches"),
            "teacher_rule": info.get("teacher_rule"),
            "inter_classes": info.get("inter_classes"),
        }
        # training seconds since the previous evaluation (the epochs this record covers)
        since = self.history[-1]["epoch"] if self.history else 0
        self.eval_times.append({"train_s": float(sum(self.epoch_times[since : self.epoch])),
                                "eval_s": time.perf_counter() - started,
                                "diagnostics_s": info.get("diagnostics_s", 0.0)})
        return record

    def run_log(self) -> RunLog:
        """The run so far as the metric logs see it (``engine.loggers.RunLog``)."""
        lines = [metrics_line(r, t) for r, t in zip(self.history, self.eval_times)]
        best = None if self.best is None else self.best["epoch"]
        return RunLog(self.epoch_log, lines, self.config.train.selection, best)

    def _selection_score(self, record: dict[str, Any]) -> float:
        sel = self.config.train.selection
        if sel == "last":
            return float(record["epoch"])
        return float(record["heldout" if sel == "heldout" else "test"]["avg_map_percent"])

    # ------------------------------------------------------------------------------------------ loop
    def fit(self, *, stop_after: int | None = None) -> FitResult:
        """Train until ``train.epochs`` (from where a resumed run stopped), evaluating and checkpointing.

        With several processes only rank 0 evaluates and writes files; the other ranks return a result without
        evaluations. The process group the trainer created is destroyed when the run ends (or fails).

        Args:
            stop_after: stop after this many epochs in total (simulates a killed run in tests).
        """
        try:
            result = self._fit(stop_after)
        except BaseException:
            self.close()
            raise
        if self.epoch == self.config.train.epochs:
            self.close()
        return result

    def close(self) -> None:
        """Destroy the process group this trainer created (multi-process runs only); ``fit`` calls it when the
        run ends. No collective can run afterwards."""
        if self._record is not None:
            self._record.close()
        if self._run_lock is not None:
            self._run_lock.release()
        self.strategy.close()

    def _fit(self, stop_after: int | None) -> FitResult:
        t = self.config.train
        last = t.epochs if stop_after is None else min(t.epochs, stop_after)
        owns_progress = isinstance(self.show_progress, bool)
        # not on a terminal (a log file, a batch job): no bars, one plain line per evaluation instead
        plain = self.show_progress is True and not getattr(self.console, "is_terminal", True)
        if self.output_dir is not None and self.is_main_process:
            self.write_config()
        with open_progress(False if plain else self.show_progress, self.console) as progress:
            task = None
            if progress is not None:
                task = progress.add_task(progress_label(self.history, None), total=t.epochs, completed=self.epoch)
            loss = None
            while self.epoch < last:
                started = time.perf_counter()
                loss = self.train_epoch(self.epoch, progress)
                self.epoch_times.append(time.perf_counter() - started)
                self.epoch += 1
                for callback in self.callbacks:
                    callback.on_epoch_end(self)
                self.epoch_log.append({"epoch": self.epoch, "train_loss": loss, "losses": dict(self.epoch_losses),
                                       "train_s": self.epoch_times[-1], "memory_ready": bool(self.model.memory_ready)})
                if self.world_size > 1 and self.output_dir is not None:
                    # rank 0 writes the checkpoints; each rank resumes from its own generator states
                    self._rank_rng = self.strategy.gather_objects(capture_rng_state())
                if not self.is_main_process:
                    continue
                evaluated = self.epoch % t.eval_interval == 0 or self.epoch == t.epochs
                if evaluated:
                    with averaged(self.ema, self.model):  # train.ema: evaluate the averaged weights
                        record = self._evaluate_all(progress)
                    record["train_loss"] = loss
                    self.history.append(record)
                    if self.best is None or self._selection_score(record) >= self._selection_score(self.best):
                        self.best = record
                        if self.output_dir is not None:
                            self.save(self.output_dir / "best.pt")
                if self._record is not None:
                    self._record.log(self.run_log())
                if plain:  # one line per epoch: the loss and its terms, and the evaluation where there is one
                    line = (evaluation_line(self.history[-1], self.best, t.epochs, t.selection) if evaluated
                            else epoch_line(self.epoch_log[-1], t.epochs))
                    self.console.print(line, highlight=False, markup=False, soft_wrap=True)
                if self.output_dir is not None and (
                    (t.checkpoint_interval and self.epoch % t.checkpoint_interval == 0) or self.epoch == last
                ):
                    self.save(self.output_dir / "last.pt")
                if task is not None:
                    progress.update(task, completed=self.epoch, description=progress_label(self.history, loss))
            if task is not None:
                if owns_progress:  # the bar stays on screen, finished, with the last loss and evaluation
                    progress.update(task, completed=self.epoch, description=progress_label(self.history, loss))
                    progress.refresh()
                else:  # a caller's progress (the benchmark) keeps its own bars only
                    progress.remove_task(task)
        final = self.history[-1] if self.history else {}
        result = FitResult(self.best or {}, final, self.history, t.selection, self.epoch_times, self.eval_times)
        if self.output_dir is not None and self.epoch == t.epochs and self.is_main_process:
            self.write_results(result)
        self.strategy.barrier()  # every rank returns once rank 0 has written the run folder
        return result

    # ------------------------------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """The checkpoint payload (see ``rskp_plugin.checkpoint``)."""
        progress = {"history": self.history, "best": self.best, "epoch_times": self.epoch_times,
                    "eval_times": self.eval_times, "epoch_log": self.epoch_log}
        if self.ema is not None:
            progress["ema"] = self.ema.state_dict()
        if self._rank_rng is not None:
            progress["rank_rng"] = self._rank_rng
        return training_payload(epoch=self.epoch, config=config_to_dict(self.config), model=self.model,
                                optimizer=self.optimizer, trainer=progress, meta=self.meta())

    def meta(self) -> dict[str, Any]:
        train = self.datasets.train
        return {
            "class_names": list(train.class_names),
            "feature_dim": int(self.datasets.feature_dim),
            "snippets_per_second": float(train.snippets_per_second),
            "environment": environment(self.device),
            "head": head_record(self.config.head.name),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a checkpoint atomically (a ``last.pt`` becomes ``last_checkpoint``)."""
        written = save_checkpoint(path, self.state())
        if written.name == "last.pt":
            self.last_checkpoint = (written, self.epoch)
        return written

    def load_state(self, data: dict[str, Any]) -> None:
        """Restore model, optimizer, progress and RNG states from a checkpoint as ``load_checkpoint`` returns it."""
        trainer = restore_training(data, self.model, self.optimizer, rank=self.rank, world_size=self.world_size)
        self.epoch = int(data["epoch"])
        self.history, self.best = list(trainer["history"]), trainer["best"]
        self.epoch_times, self.eval_times = list(trainer["epoch_times"]), list(trainer["eval_times"])
        self.epoch_log = list(trainer.get("epoch_log") or epoch_log_of(self.history, self.epoch_times))
        if self.ema is not None and trainer.get("ema"):
            self.ema.load_state_dict(trainer["ema"])

    @classmethod
    def resume(cls, path: str | os.PathLike[str], *, overrides: Sequence[str] = (),
               values: dict[str, Any] | None = None, expect: ExperimentConfig | None = None,
               overwrite: bool = False, datasets: Datasets | None = None, progress: Any = True,
               console: Any = None) -> "Trainer":
        """A trainer that continues the run saved in ``path`` (a checkpoint or a run folder with ``last.pt``).

        The stored config is used, with its run folder set to the checkpoint's folder (a copied run folder is
        continued where it is, not where it was first written); ``values`` (typed, dotted keys) and then
        ``overrides`` (``train.epochs=300``) may extend or redirect the run.

        Args:
            expect: a config the resumed one must equal (run folders aside), e.g. the ``--config`` also given;
                a difference is a ``ConfigError`` listing the keys.
        """
        data = load_checkpoint(path)
        check_head_installed(data, path)
        config, checkpoint = resumed_config(path, data, overrides=overrides, values=values, expect=expect)
        trainer = cls(config, datasets=datasets, progress=progress, console=console, overwrite=overwrite,
                      resume_from=checkpoint)
        trainer.load_state(data)
        trainer.last_checkpoint = (checkpoint, trainer.epoch)
        if trainer._record is not None:
            # the epochs the checkpoint knows: lines a killed run wrote after it are dropped, none repeated
            trainer._record.log(trainer.run_log(), resumed=True)
        return trainer

    def write_config(self) -> Path:
        """``config.yaml`` in the run folder (``RunRecord.write_config``); rank 0 only."""
        assert self._record is not None
        return self._record.write_config(self.config)

    def write_results(self, result: FitResult) -> Path:
        """``results.json`` in the run folder (``RunRecord.write_results``); rank 0 only."""
        assert self._record is not None
        return self._record.write_results(result, self.config, self.device)
