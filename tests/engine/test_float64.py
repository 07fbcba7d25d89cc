"""A float64 training run stays float64: the engine's batches keep the features' precision for the labels and the
loss, so a run in float64 equals a plain float64 computation of the same step."""

from __future__ import annotations

import copy
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
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


class _NotFloat64(TorchFunctionMode):
    """Records where a torch function returns a floating tensor that is not float64 (rskp and head frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor) and o.is_floating_point() and o.dtype != torch.float64:
                stack = traceback.extract_stack()[:-1]
                if any("torch/optim" in f.filename for f in stack):
                    continue  # the optimisers' step counters are float32 by design; their steps use python floats
                ours = [f for f in stack if "rskp_plugin" in f.filename or "heads" in f.filename]
                site = ours[-1] if ours else stack[-1]
                self.sites.add(f"{Path(site.filename).name}:{site.lineno} {getattr(func, '__name__', func)}")
        return out


def _float64_fit(head: str) -> set[str]:
    data = Datasets(train=tiny_dataset(10, 0, "train"), test=tiny_dataset(4, 1, "test"),
                    heldout=tiny_dataset(4, 2, "heldout"), collate=collate64)
    trainer = Trainer(config(head, "train.epochs=3", "rskp.memory.warmup_epochs=1", "train.diagnostics=true",
                             *OFFICIAL, "rskp.losses.distillation_temperature=0.2"), datasets=data, progress=False)
    trainer.model.double()
    with _NotFloat64() as mode:
        trainer.fit()
    return mode.sites




def test_a_float64_run_computes_in_float64_throughout() -> None:
    """Training with the memory bank in use, evaluation and the per-branch diagnostics of a float64 FAC-Net + RSKP
    run (official formulation): no torch function returns float32 (one float32 weight, schedule factor or
    host copy would leave the float64 path ~1e-8 off a float64 computation)."""
    sites = _float64_fit("facnet")
    assert not sites, sites


def test_the_softmax_rule_branch_output_keeps_float64() -> None:
    from rskp_plugin.method.walks import scores_output

    main = SimpleNamespace(cas=torch.zeros(1, 3, 2, dtype=torch.float64), attention=None,
                           tcam=torch.zeros(1, 3, 3, dtype=torch.float64))
    main._replace = lambda **kw: SimpleNamespace(**{**vars(main), **kw})
    tcam = torch.tensor([[[0.1, 0.2, 0.3], [1.0, -1.0, 0.5], [1e-3, 2e-3, 0.0]]], dtype=torch.float64)
    out = scores_output(main, tcam, 2)
    assert torch.equal(out.cas, torch.softmax(tcam, dim=-1)[..., :2])
