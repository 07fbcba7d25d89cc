"""RSKP's schedule is the model's public API: a training loop written by hand, calling ``start_epoch`` once per
epoch as the README shows, trains the weights ``Trainer.fit`` trains (ramp-up and memory bank included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tiny import tiny_dataset
from _toy import ToyHead

from rskp_plugin import RSKPWrapper, create_head
from rskp_plugin.config import MemoryConfig, RSKPConfig
from rskp_plugin.config_io import apply_overrides
from rskp_plugin.data import collate
from rskp_plugin.engine import Datasets, ExperimentConfig, Trainer, seed_everything

EPOCHS = 4


def _config() -> ExperimentConfig:
    return apply_overrides(ExperimentConfig(), [
        "head.name=facnet", "head.options={embed_dim: 8}", "data.feature_dim=16", "optimizer.lr=1e-2",
        "optimizer.accumulation=4", "optimizer.batch_size=4", "optimizer.group_by_length=false",
        "train.eval_batch_size=5", f"train.epochs={EPOCHS}", "train.eval_interval=100", "train.selection=last",
        "train.output_dir=''", "train.diagnostics=false", "rskp.memory.warmup_epochs=1",  # bank filled before epoch 2
    ])


def _hand_written_loop(cfg: ExperimentConfig, videos: list) -> RSKPWrapper:
    """What a user writes around RSKPWrapper: the README's loop."""
    seed_everything(cfg.train.seed)
    head = create_head("facnet", num_classes=3, feature_dim=16, embed_dim=8)
    model = RSKPWrapper(head, cfg.rskp)
    opt = cfg.optimizer
    optimizer = torch.optim.Adam(model.parameters(), lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay)

    def memory_batches():  # the training videos in a fixed order, as (features, mask, labels)
        for start in range(0, len(videos), cfg.train.eval_batch_size):
            b = collate(videos[start:start + cfg.train.eval_batch_size])
            yield b.features, b.mask, b.labels

    for epoch in range(EPOCHS):
        model.train()
        model.start_epoch(epoch, memory_batches)  # the one schedule call per epoch
        order = np.random.default_rng([cfg.train.seed, epoch]).permutation(len(videos))
        for start in range(0, len(order), opt.accumulation):
            chunk = order[start:start + opt.accumulation]
            b = collate([videos[i] for i in chunk])
            loss = model(b.features, b.mask, b.labels).loss
            (loss * len(chunk)).backward()  # the official sum of per-video gradients
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return model


def test_a_hand_written_loop_equals_trainer_fit() -> None:
    cfg = _config()
    train = tiny_dataset(12, 0, "train")
    trainer = Trainer(cfg, datasets=Datasets(train=train, test=tiny_dataset(4, 1, "test")), progress=False)
    trainer.fit()
    assert trainer.model.memory_ready and trainer.model.rampup == 1.0
    model = _hand_written_loop(cfg, list(train.videos))
    assert model.memory_ready
    mine, theirs = model.state_dict(), trainer.model.state_dict()
    assert mine.keys() == theirs.keys()
    for name in theirs:
        torch.testing.assert_close(mine[name], theirs[name], rtol=1e-5, atol=1e-6, msg=name)


def test_start_epoch_ramps_up_and_fills_the_bank_when_the_warmup_ends() -> None:
    from _toy import labelled_batch

    model = RSKPWrapper(ToyHead(), RSKPConfig(memory=MemoryConfig(warmup_epochs=2))).double()
    x, mask, labels = labelled_batch([6, 5, 4])
    filled = []

    def batches():
        filled.append(True)
        return [(x, mask, labels)]

    weights = []
    for epoch in range(5):
        model.start_epoch(epoch, batches)
        weights.append(model.rampup)
        assert model.memory_ready == (epoch >= 3)
    assert filled == [True]  # filled once, before epoch 3 (after the last warm-up epoch, index 2)
    assert weights[0] < weights[1] < 1.0 == weights[2] == weights[3]  # E = the warm-up: full weight from epoch 2
    fresh = RSKPWrapper(ToyHead(), RSKPConfig(memory=MemoryConfig(warmup_epochs=0)))
    with pytest.raises(ValueError, match="pass start_epoch\\(epoch, memory_batches=...\\)"):
        fresh.start_epoch(1)


def test_training_without_the_schedule_is_warned_once() -> None:
    from _toy import labelled_batch

    model = RSKPWrapper(ToyHead()).double().train()
    x, mask, labels = labelled_batch([6, 5])
    with pytest.warns(UserWarning, match="without start_epoch"):
        model(x, mask, labels)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(x, mask, labels)  # once is enough
        scheduled = RSKPWrapper(ToyHead()).double().train()
        scheduled.start_epoch(0)
        scheduled(x, mask, labels)
