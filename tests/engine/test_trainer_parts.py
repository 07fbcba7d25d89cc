"""The trainer's parts on their own: the warm-up schedule and the single-process strategy."""

from __future__ import annotations

import numpy as np
import torch

from _toy import ToyHead

from rskp_plugin import RSKPWrapper
from rskp_plugin.config_io import apply_overrides
from rskp_plugin.engine import ExperimentConfig
from rskp_plugin.engine.strategy import SingleProcess
from rskp_plugin.engine.warmup import MemoryWarmup
from rskp_plugin.method.memory import MemoryBank
from rskp_plugin.method.model import HeadOnlyModel


def _model(*overrides: str):
    config = apply_overrides(ExperimentConfig(), ["rskp.memory.warmup_epochs=2", *overrides])
    if not config.rskp_enabled:
        return MemoryWarmup(config), HeadOnlyModel(ToyHead(), config.rskp)
    return MemoryWarmup(config), RSKPWrapper(ToyHead(), config.rskp)


def test_the_memory_bank_is_due_after_the_last_warmup_epoch_until_it_is_filled() -> None:
    warmup, model = _model()
    assert [warmup.due(model, done) for done in range(5)] == [False, False, False, True, True]
    model.memory.ready.fill_(True)
    assert not any(warmup.due(model, done) for done in range(5))
    for off in ("rskp_enabled=false", "rskp.memory.enabled=false"):
        warmup, model = _model(off)
        assert not any(warmup.due(model, done) for done in range(5)), off


def test_single_process_runs_every_video_and_updates_the_bank_as_offers_come() -> None:
    strategy = SingleProcess(torch.device("cpu"))
    group = np.array([4, 1, 3])
    assert strategy.share(group, [10, 20, 30]) is group
    assert strategy.sum_floats is None and strategy.gather_objects("x") == ["x"]
    bank = MemoryBank(2, 1, 3)
    with strategy.memory_step(bank, num_representatives=1):
        bank.update(torch.ones(1, 1, 3), torch.full((1, 1, 2), 0.5), torch.tensor([[1.0, 0.0]]))
        assert float(bank.scores[0, 0]) == 0.5  # applied at once, as in the official one-video loop
