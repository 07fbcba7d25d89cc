"""Padded batches with masks, and the fixed-length snippet sampling of WUM/BaS-Net.

Without sampling a batch pads every video to the longest one; ``mask`` marks the real snippets, so a model that
respects the mask gives the same result for a video alone and in a batch. With ``length=L`` (WUM/BaS-Net:
``num_segments = 750`` on THUMOS14):

* ``"uniform"`` (their test-time sampling): a video of n > L snippets keeps positions floor(i * n / L),
  i = 0..L-1; a shorter one is kept whole.
* ``"random"`` (their training-time ``random_perturb``): position i is drawn uniformly from the integers between
  floor(i * n / L) and floor((i + 1) * n / L) inclusive (the last one up to n - 1), so every video yields exactly
  L positions; shorter videos repeat snippets.

``Batch.indices`` records which original snippet each position came from (to map positions back to seconds:
``indices / snippets_per_second``); padded positions hold 0 and ``mask`` False.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .records import VideoDataset, VideoRecord

SAMPLING = ("none", "uniform", "random")


class Batch(NamedTuple):
    """A padded batch. Shapes: features (B, T, D) float32, mask (B, T) bool, labels (B, C) float32,
    names B strings, indices (B, T) int64 original snippet index of each position."""

    features: Tensor
    mask: Tensor
    labels: Tensor
    names: list[str]
    indices: Tensor


def uniform_positions(n: int, length: int) -> Tensor:
    """WUM/BaS-Net test-time sampling: ``floor(i * n / L)`` for i < L if n > L, else all n snippets. -> (min(n, L),)"""
    if n <= length:
        return torch.arange(n)
    return torch.div(torch.arange(length) * n, length, rounding_mode="floor")


def random_positions(n: int, length: int, generator: torch.Generator | None = None) -> Tensor:
    """WUM/BaS-Net training-time ``random_perturb``: exactly L positions, each drawn between consecutive grid points.

    Grid point i is floor(i * n / L). Position i < L - 1 is uniform on the integers [g_i, g_{i+1}] (both ends
    included, as in the official code; equal to g_i when the two coincide); the last one is uniform on
    [g_{L-1}, n - 1]. If n == L the identity is returned. -> (L,) int64
    """
    if n == length:
        return torch.arange(n)
    grid = torch.div(torch.arange(length + 1) * n, length, rounding_mode="floor")  # (L + 1,)
    low = grid[:-1]
    high = grid[1:].clone()
    high[-1] = max(n - 1, 0)  # the last position may reach the final snippet
    high = torch.maximum(high, low)
    same = grid[:-1] == grid[1:]
    high[:-1] = torch.where(same[:-1], low[:-1], high[:-1])
    draw = torch.rand(length, generator=generator, dtype=torch.float64)
    return (low + torch.floor(draw * (high - low + 1).double()).long()).clamp_(max=max(n - 1, 0))


def collate(
    videos: Sequence[VideoRecord],
    *,
    length: int | None = None,
    sampling: str = "none",
    generator: torch.Generator | None = None,
) -> Batch:
    """Stack videos into one padded batch.

    Args:
        videos: the B videos (same feature width and class count).
        length: L, the fixed number of positions for ``"uniform"``/``"random"`` sampling.
        sampling: ``"none"`` (every snippet; pad to the longest video), ``"uniform"`` or ``"random"`` (see the
            module docstring).
        generator: torch generator for ``"random"`` (seed it for reproducible batches).

    Returns:
        ``Batch`` with features (B, T, D), mask (B, T), labels (B, C), names, indices (B, T).
    """
    if not videos:
        raise DataError("collate needs at least one video")
    if sampling not in SAMPLING:
        raise DataError(f"sampling must be one of {', '.join(map(repr, SAMPLING))}, got {sampling!r}")
    if sampling != "none" and (length is None or length < 1):
        raise DataError(f"sampling={sampling!r} needs a positive length (WUM/BaS-Net use 750), got {length}")
    widths = {v.features.shape[1] for v in videos}
    classes = {v.labels.shape[0] for v in videos}
    if len(widths) > 1 or len(classes) > 1:
        raise DataError(f"collate: videos differ in feature width {sorted(widths)} or class count {sorted(classes)}")
    positions = []
    for video in videos:  # one index vector per video; snippets are gathered in one call below
        n = video.num_snippets
        if sampling == "uniform":
            positions.append(uniform_positions(n, int(length)))
        elif sampling == "random":
            positions.append(random_positions(n, int(length), generator))
        else:
            positions.append(torch.arange(n))
    batch, longest, width = len(videos), max(len(p) for p in positions), widths.pop()
    features = np.zeros((batch, longest, width), dtype=np.float32)
    mask = torch.zeros(batch, longest, dtype=torch.bool)
    indices = torch.zeros(batch, longest, dtype=torch.long)
    for b, (video, pos) in enumerate(zip(videos, positions)):
        features[b, : len(pos)] = video.features if sampling == "none" else video.features[pos.numpy()]
        mask[b, : len(pos)] = True
        indices[b, : len(pos)] = pos
    labels = torch.from_numpy(np.stack([v.labels for v in videos]).astype(np.float32, copy=False))
    return Batch(torch.from_numpy(features), mask, labels, [v.name for v in videos], indices)


def iterate_batches(
    dataset: VideoDataset | Sequence[VideoRecord],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    length: int | None = None,
    sampling: str = "none",
    drop_last: bool = False,
) -> Iterator[Batch]:
    """Batches over a dataset (one epoch); the order and the random sampling depend only on ``seed``.

    Args:
        dataset: the videos.
        batch_size: videos per batch.
        shuffle: visit videos in a random order (seeded) instead of dataset order.
        seed: seed of the order and of ``"random"`` sampling; use e.g. ``base_seed + epoch`` per epoch.
        length: L for ``"uniform"``/``"random"`` sampling.
        sampling: ``"none"``, ``"uniform"`` or ``"random"`` (see ``collate``).
        drop_last: drop a last batch smaller than ``batch_size``.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    videos = list(dataset)
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(videos), generator=generator).tolist() if shuffle else list(range(len(videos)))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        if drop_last and len(chunk) < batch_size:
            break
        yield collate([videos[i] for i in chunk], length=length, sampling=sampling, generator=generator)
