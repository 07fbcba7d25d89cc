"""Timing helper shared by the benchmark scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

R = TypeVar("R")


def best_time(fn: Callable[[], R], repeats: int) -> tuple[float, R]:
    """Best of ``repeats`` runs and the last result: on a shared machine the minimum is the least disturbed time."""
    out, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out
