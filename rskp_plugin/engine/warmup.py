"""RSKP's warm-up schedule as a trainer callback (docs/heads.md 2.4).

Epochs 0 .. ``rskp.memory.warmup_epochs`` (0-based, inclusive; official 100) train without the inter-video branch.
At the end of epoch ``warmup_epochs`` one evaluation pass over the training set (fixed order, dropout off) fills the
memory bank (``Model.initialize_memory``); from then on the model itself runs the inter branch, uses the smaller
distillation weight and offers every training batch to the bank (``RSKPWrapper.memory_ready``). The trainer only
calls ``on_epoch_end`` of its callbacks; what happens when is decided here and in the model.
"""

from __future__ import annotations

import types
from typing import Any, Protocol

from .config import ExperimentConfig
from .inference import forward_batches


class Callback(Protocol):
    """Something the trainer calls at fixed points of the run (on every rank)."""

    def on_epoch_end(self, trainer: Any) -> None:
        """After ``trainer.epoch`` was advanced past the epoch just trained, before evaluation and checkpoints."""
        ...


class MemoryWarmup:
    """Fills the memory bank once, after the last warm-up epoch (nothing for the head alone or without memory).

    Args:
        config: the experiment (``rskp_enabled``, ``rskp.memory``, ``train.eval_batch_size``).
    """

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config

    def due(self, model: Any, epochs_done: int) -> bool:
        """Whether the memory bank must be filled now, ``epochs_done`` epochs into the run (the model's own rule,
        ``memory_fill_due``, which ``start_epoch`` follows in a loop written by hand)."""
        return bool(model.memory_fill_due(epochs_done))

    def on_epoch_end(self, trainer: Any) -> None:
        if self.due(trainer.model, trainer.epoch):
            self.fill(trainer)

    def fill(self, trainer: Any) -> None:
        """The warm-up pass: every training video once, eval mode, no gradients, in batches of similar lengths
        (``forward_batches``: far less padding than the dataset order); the bank keeps the top-s of all the
        candidates offered, whatever their order.

        With several processes each rank passes over every ``world_size``-th video and the candidates of all are
        gathered into one update (``strategy.memory_step``), so every rank ends with the bank one process would fill.
        """
        strategy = trainer.strategy
        dataset: Any = trainer.datasets.train
        if strategy.world_size > 1:
            dataset = types.SimpleNamespace(videos=dataset.videos[strategy.rank :: strategy.world_size])
        batches = (
            (f, m, l)
            for f, m, l, _ in forward_batches(
                dataset, self.config.train.eval_batch_size, trainer.device, trainer.datasets.collate,
            )
        )
        n = self.config.rskp.summarizer.num_representatives
        with strategy.memory_step(trainer.model.memory, n), trainer.autocast():
            trainer.model.initialize_memory(batches)
