"""A float64 training run stays float64: the engine's batches keep the features' precision for the labels and the
loss, so a run in float64 equals a plain float64 computation of the same step."""

from __future__ import annotations

import copy

import numpy as np
import torch
from _tiny import config, tiny_dataset

from rskp_plugin.data import collate
from rskp_plugin.engine import Datasets, Trainer
from rskp_plugin.engine.loop import to_device

OFFICIAL = ("rskp.teacher.source=propagated", "rskp.teacher.weighting=uniform", "rskp.fusion.use_intra_at_test=true",
            "rskp.losses.rampup_epochs=0")  # RSKPConfig.official()


def collate64(videos):
    b = collate(videos)
    return b._replace(features=np.asarray(b.features, dtype=np.float64), labels=np.asarray(b.labels, np.float64))


def test_batches_keep_float64_labels() -> None:
    features, _, labels = to_device(collate64(tiny_dataset(3, 0, "train").videos), torch.device("cpu"))
    assert features.dtype == labels.dtype == torch.float64
    features, _, labels = to_device(collate(tiny_dataset(3, 0, "train").videos), torch.device("cpu"))
    assert features.dtype == labels.dtype == torch.float32


def test_float64_training_step_equals_a_float64_computation() -> None:
    """One optimiser step of FAC-Net + RSKP (official formulation) in float64 through the engine: its gradients
    equal autograd of the summed per-video loss in float64 to rounding. FAC-Net's classification target is
    y / (sum y + 1e-8): with labels in float32 it rounds to y, 1e-8 off the float64 value."""
    train = tiny_dataset(10, 0, "train")
    data = Datasets(train=train, test=tiny_dataset(4, 1, "test"), heldout=tiny_dataset(4, 2, "heldout"),
                    collate=collate64)
    trainer = Trainer(config("facnet", "optimizer.batch_size=10", "optimizer.accumulation=10", *OFFICIAL),
                      datasets=data, progress=False)
    trainer.model.double()
    reference = copy.deepcopy(trainer.model)
    captured: list[torch.Tensor] = []
    trainer.optimizer.step = lambda *a, **k: captured.extend(  # type: ignore[method-assign]
        p.grad.detach().clone() for p in trainer.model.parameters() if p.grad is not None)
    trainer.train_epoch(0)
    order = trainer.epoch_order(0)
    batch = collate64([train.videos[i] for i in order])
    features, mask, labels = (torch.as_tensor(x) for x in (batch.features, batch.mask, batch.labels))
    reference.train()
    reference.start_epoch(0)
    (reference(features, mask, labels).loss * len(order)).backward()
    expected = [p.grad for p in reference.parameters() if p.grad is not None]
    assert len(captured) == len(expected) and all(g.dtype == torch.float64 for g in captured)
    got, want = torch.cat([g.flatten() for g in captured]), torch.cat([g.flatten() for g in expected])
    assert float((got - want).norm() / want.norm()) < 1e-13
