"""Padded batches that waste little compute: consecutive runs of length-sorted videos, cut where padding would cost
more than another forward pass (training micro-batches, evaluation, the memory warm-up pass)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def plan_microbatches(
    lengths: Sequence[int], max_batch: int, *, group_by_length: bool = True, overhead: int = 256
) -> list[np.ndarray]:
    """Split one accumulation group into padded micro-batches of at most ``max_batch`` videos.

    With ``group_by_length`` the videos are sorted by length and cut into contiguous runs minimising the padded
    size sum(run length x longest video of the run) + ``overhead`` snippets per forward pass (dynamic programming
    over the <= accumulation sorted videos); otherwise they run in order, ``max_batch`` at a time. Either way the
    runs, taken in order, visit the videos in the same order for every ``max_batch`` (one video per run too), which
    the memory bank's in-order retrieval needs for batched and one-video training to agree.

    Args:
        lengths: snippets per video of the group, in visiting order.
        max_batch: the most videos in one forward pass.
        group_by_length: sort by length before cutting.
        overhead: the fixed cost of one forward pass, in snippets.

    Returns:
        Index arrays into ``lengths``, one per micro-batch, together covering every video once.
    """
    n = len(lengths)
    if not group_by_length:
        return [np.arange(i, min(i + max_batch, n)) for i in range(0, n, max_batch)]
    order = np.argsort(np.asarray(lengths), kind="stable")
    if max_batch == 1:
        return [order[i : i + 1] for i in range(n)]
    sorted_len = np.asarray(lengths)[order]
    best = [0.0] + [math.inf] * n  # best[j]: cost of the first j sorted videos
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - max_batch), j):  # run = sorted videos i .. j-1, padded to sorted_len[j-1]
            cost = best[i] + (j - i) * float(sorted_len[j - 1]) + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs, j = [], n
    while j > 0:
        runs.append(order[cut[j] : j])
        j = cut[j]
    return runs[::-1]
