"""The step loop: one epoch of accumulated optimiser steps over padded micro-batches.

Each epoch visits the training videos in ``epoch_order`` (a pure function of the seed and the epoch, so a resumed
run visits them in the same order without saving a generator), in accumulation groups of
``optimizer.accumulation`` videos; each group is one optimiser step on the sum of its videos' gradients, computed
in micro-batches chosen by ``plan_microbatches``. The loop talks to processes only through the trainer's strategy
(``engine.strategy``).

One-video-at-a-time vs batched. The official code runs one video per forward, calls ``backward`` per video and
steps Adam every 10 videos, so the step uses the SUM of 10 per-video gradients. The model averages per-video
losses over a batch, so a padded batch of B videos whose loss is multiplied by B gives exactly that sum (padded
snippets are masked out everywhere). ``optimizer.batch_size`` = 1 is the official loop, 10 the fast path; both
give the same weights up to float rounding, after warm-up too: in the official loop video j of a group retrieves
the memory after videos < j updated it, and in a batch row j reads the bank the same way
(``MemoryBank.retrieve_in_order``), so both loops must visit a group's videos in the same order:
``plan_microbatches`` sorts every group by length (``optimizer.group_by_length``) for one video per forward as
for batches. Only dropout masks differ (different draws).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import TrainingError
from .batching import plan_microbatches  # noqa: F401 (its home before engine.batching; tests import it here)
from .diagnostics import LossMeter


def epoch_order(seed: int, num_videos: int, epoch: int) -> np.ndarray:
    """Indices of the training videos in the order epoch ``epoch`` visits them."""
    return np.random.default_rng([seed, epoch]).permutation(num_videos)


def train_epoch(trainer: Any, epoch: int, progress: Any = None) -> tuple[float, dict[str, float] | None]:
    """One pass over the training videos with accumulation (``Trainer.train_epoch``).

    The videos are taken in ``epoch_order`` in groups of ``optimizer.accumulation`` (the last group may be
    shorter); each group is one optimiser step on the sum of its videos' gradients. Inside a group the videos
    run in padded micro-batches of at most ``optimizer.batch_size`` videos, chosen by ``plan_microbatches`` to
    waste little compute on padding; the group's gradient does not depend on how it is split.

    With several processes each group is dealt to the ranks (``DataParallel.share``) and the ranks'
    gradients are summed before the step, which is then the single-process step; the returned loss is the
    mean over all ranks' videos.

    Args:
        trainer: the ``Trainer``; the loop uses its config, datasets, model, optimizer, strategy, ``autocast`` and
            ``epoch_order``.
        epoch: the 0-based epoch.
        progress: a rich progress display for a per-epoch bar, or None.

    Returns:
        The mean per-video loss over every process's videos, and the mean of each loss term
        (``train.diagnostics``; else None).
    """
    cfg, strategy = trainer.config.optimizer, trainer.strategy
    model, videos = trainer.model, trainer.datasets.train.videos
    model.train()
    model.start_epoch(epoch)  # epoch-dependent loss weights (rskp.losses.rampup_epochs)
    order = trainer.epoch_order(epoch)
    groups = [order[start : start + cfg.accumulation] for start in range(0, len(order), cfg.accumulation)]
    groups = [strategy.share(g, [videos[i].num_snippets for i in g]) for g in groups]  # this process's share
    total = sum(len(g) for g in groups)
    task = progress.add_task(f"epoch {epoch + 1}", total=total) if progress is not None else None
    total_loss = 0.0
    meter = LossMeter() if trainer.config.train.diagnostics else None
    n = trainer.config.rskp.summarizer.num_representatives
    trainer.optimizer.zero_grad(set_to_none=True)
    for group in groups:
        lengths = [videos[i].num_snippets for i in group]
        micros = plan_microbatches(lengths, cfg.batch_size, group_by_length=cfg.group_by_length) if lengths else []
        # before the bank is in use no process updates it: no gathering then
        with strategy.memory_step(model.memory if model.memory_ready else None, n):
            for micro in micros:
                chunk = group[micro]
                features, mask, labels = to_device(trainer.datasets.collate([videos[i] for i in chunk]), trainer.device)
                with trainer.autocast():
                    out = model(features, mask=mask, labels=labels)
                if out.loss is None or not torch.isfinite(out.loss):
                    raise diverged(epoch, out, [videos[i].name for i in chunk], cfg.lr)
                # Per-video losses are averaged over the batch: x len(chunk) turns that into the official sum.
                scale = len(chunk) if cfg.sum_gradients else len(chunk) / cfg.accumulation
                (out.loss.to(torch.promote_types(out.loss.dtype, torch.float32)) * scale).backward()
                total_loss += float(out.loss.detach()) * len(chunk)
                if meter is not None:
                    meter.add(out.losses, len(chunk))
                if task is not None:
                    progress.advance(task, len(chunk))
        strategy.reduce_gradients(model.parameters())
        step(model, trainer.optimizer, cfg.grad_clip)
        if getattr(trainer, "ema", None) is not None:  # train.ema: the average follows every step
            trainer.ema.update(model)
    if task is not None:
        progress.remove_task(task)
    # a step can overflow the weights while every loss stays finite (a scale-invariant head); evaluation would then
    # meet NaN predictions with no hint why: one check per epoch names the cause
    named = list(model.named_parameters())
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).tolist()  # one sync, not one per tensor
    bad = [name for (name, _), ok in zip(named, finite) if not ok]
    if bad:
        raise TrainingError(
            f"training diverged in epoch {epoch + 1}: the optimiser steps left non-finite weights in "
            f"{', '.join(bad[:3])}{' and more' if len(bad) > 3 else ''} while the losses stayed finite. Try a lower "
            f"learning rate (optimizer.lr is {cfg.lr:g}: --set optimizer.lr=...) or gradient clipping "
            "(--set optimizer.grad_clip=10)"
        )
    reduce = strategy.sum_floats
    if reduce is not None:
        total_loss = reduce(total_loss)
    losses = meter.means(reduce) if meter is not None else None
    return total_loss / len(order), losses


def step(model: nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float) -> None:
    """One optimiser step (gradient norm clipped to ``grad_clip`` when > 0), then the gradients are dropped."""
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def to_device(batch: Any, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """A collated batch as (features (B, T, D), mask (B, T), labels (B, C) float) on ``device``."""
    features = torch.as_tensor(batch.features)
    labels = torch.as_tensor(batch.labels).to(torch.promote_types(features.dtype, torch.float32))  # float64 stays
    return (
        features.to(device, non_blocking=True),
        torch.as_tensor(batch.mask).to(device, non_blocking=True),
        labels.to(device, non_blocking=True),
    )


def diverged(epoch: int, out: Any, names: list[str], lr: float) -> TrainingError:
    """The error for a non-finite loss: the epoch, the terms that went non-finite and what to try."""
    bad = [f"{k}={float(v.detach()):g}" for k, v in sorted(out.losses.items())
           if not torch.isfinite(v.detach()).all()]
    terms = f"non-finite terms: {', '.join(bad)}" if bad else "no named term is non-finite"
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return TrainingError(
        f"training diverged in epoch {epoch + 1}: the loss is {out.loss} ({terms}; videos {shown}). "
        f"Try a lower learning rate (optimizer.lr is {lr:g}: --set optimizer.lr=...), "
        "gradient clipping (--set optimizer.grad_clip=10), or check the features for huge values"
    )
