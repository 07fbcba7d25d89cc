"""Tiny labelled videos for engine-level tests (training, mixed precision, several processes): seconds to run."""

from __future__ import annotations

import attrs
import numpy as np

from rskp_plugin.config_io import apply_overrides
from rskp_plugin.data import VideoDataset, VideoRecord
from rskp_plugin.engine import Datasets, ExperimentConfig, Trainer


def tiny_dataset(n: int, seed: int, subset: str, classes: int = 3, dim: int = 16) -> VideoDataset:
    """Videos of 10-40 snippets; class c adds +2 to feature c over one instance."""
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(n):
        length, c = int(rng.integers(10, 40)), i % classes
        x = rng.normal(size=(length, dim)).astype(np.float32)
        s = int(rng.integers(0, length // 2))
        e = s + length // 3
        x[s:e, c] += 2.0
        labels = np.eye(classes, dtype=np.float32)[c]
        sps = 25 / 16
        videos.append(VideoRecord(f"{subset}_{i}", x, labels, length / sps, [[s / sps, e / sps]], [c]))
    return VideoDataset("tiny", subset, [f"class{k}" for k in range(classes)], videos)


def train_epochs(cfg: ExperimentConfig, datasets: Datasets, epochs: int) -> Trainer:
    """Train ``epochs`` epochs as ``Trainer.fit`` does (memory bank filled after warm-up), without evaluating."""
    trainer = Trainer(cfg, datasets=datasets, progress=False)
    for epoch in range(epochs):
        trainer.train_epoch(epoch)
        trainer.epoch += 1
        if trainer.memory_due:
            trainer.initialize_memory()
    return trainer


def config(head: str = "facnet", *overrides: str, dropout: float = 0.0, **options) -> ExperimentConfig:
    """The official recipe on tiny data: 16-d embedding, no dropout (so batch composition is the only change)."""
    opts = {"embed_dim": 16, "dropout": dropout, **options}
    if head == "wum":
        opts.setdefault("magnitude_dropout", dropout)
    base = ExperimentConfig()
    base = attrs.evolve(base, head=attrs.evolve(base.head, name=head, options=opts))
    return apply_overrides(base, [
        "optimizer.lr=1e-3", "optimizer.batch_size=5", "optimizer.accumulation=5", "train.output_dir=''",
        "train.eval_interval=1", "train.device=cpu", *overrides,  # exact-equality checks: float32 on the CPU
    ])
