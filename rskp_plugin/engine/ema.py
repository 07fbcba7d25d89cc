"""An exponential moving average of the weights, for evaluation (``train.ema``; off by default).

After every optimiser step the average moves towards the trained weights: ``avg <- d avg + (1 - d) w`` with
``d = min(decay, (1 + n) / (10 + n))`` after ``n`` earlier updates (the usual warm-up of the rate, so a short run
is not dominated by its initial weights). Every evaluation, and so the selection, ``best.pt`` and the numbers a run
reports, uses the averaged weights; training continues on the trained ones, which are put back bit for bit after
each evaluation. Only parameters are averaged: buffers, the RSKP memory bank among them, stay those of the trained
model (the bank holds snippets the trained model embedded, not weights).

A checkpoint keeps the trained weights as its ``model`` and the average under ``trainer["ema"]``: a resumed run
continues both exactly, and ``load_trained_model`` (``rskp predict``, ``rskp plot``) loads the average over the
trained weights, so a prediction from ``best.pt`` reproduces the run's evaluation.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn


class WeightAverage:
    """The moving average of ``model``'s parameters.

    Args:
        model: the model trained (its parameters are copied as the starting average).
        decay: the largest rate ``d`` (``train.ema``), in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.params = {name: p.detach().clone() for name, p in model.named_parameters()}

    def rate(self) -> float:
        """The rate of the next update: ``min(decay, (1 + n) / (10 + n))``."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s parameters (after an optimiser step)."""
        keep = self.rate()
        for name, p in model.named_parameters():
            self.params[name].lerp_(p.detach(), 1.0 - keep)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """``model`` with the averaged parameters inside the block, its own ones restored (bit for bit) after."""
        params = dict(model.named_parameters())
        trained = {name: p.detach().clone() for name, p in params.items()}
        try:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(self.params[name])
            yield
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(trained[name])

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (``trainer["ema"]``)."""
        return {"decay": self.decay, "updates": self.updates, "params": {k: v.clone() for k, v in self.params.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        for name, value in state["params"].items():
            self.params[name].copy_(value)


def averaged(ema: WeightAverage | None, model: nn.Module) -> contextlib.AbstractContextManager:
    """``ema.applied(model)``, or a block that changes nothing without an average."""
    return ema.applied(model) if ema is not None else contextlib.nullcontext()


def load_average(model: nn.Module, checkpoint: dict[str, Any]) -> bool:
    """Load the averaged parameters a checkpoint keeps (``trainer["ema"]``) into ``model``; False where it has
    none (``train.ema`` off)."""
    trainer = checkpoint.get("trainer")
    state = trainer.get("ema") if isinstance(trainer, dict) else None
    if not state:
        return False
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(state["params"][name])
    return True
