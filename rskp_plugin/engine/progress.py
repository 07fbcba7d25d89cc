"""The progress display of ``rskp train`` and ``rskp bench``: one bar for the run, one per epoch and evaluation."""

from __future__ import annotations

import contextlib
from typing import Any, Sequence


def open_progress(show: Any, console: Any) -> contextlib.AbstractContextManager:
    """The display a run shows its bars in: ``show`` itself when it is a running ``rich.progress.Progress`` owned
    by the caller, a new ``progress_bar`` when it is True, and None (no bars) when it is False."""
    if not isinstance(show, bool):
        return contextlib.nullcontext(show)
    if not show:
        return contextlib.nullcontext(None)
    return progress_bar(console)


def progress_label(history: Sequence[dict[str, Any]], loss: float | None) -> str:
    """The training bar's description: the latest loss and evaluation (AVG mAP of the test set)."""
    parts = [] if loss is None else [f"loss {loss:.4f}"]
    if history:
        last = history[-1]
        parts.append(f"AVG mAP {last['test']['avg_map_percent']:.1f} % at epoch {last['epoch']}")
    return f"training ({', '.join(parts)})" if parts else "training"


def evaluation_line(record: dict[str, Any], best: dict[str, Any] | None, epochs: int, selection: str) -> str:
    """One plain line per evaluation, for output that is not a terminal: epoch, training loss, test and held-out
    AVG, and the epoch the selection picks so far."""
    parts = [f"epoch {record['epoch']}/{epochs}"]
    if record.get("train_loss") is not None:
        parts.append(f"loss {record['train_loss']:.4f}")
    parts.append(f"test AVG {record['test']['avg_map_percent']:.2f} %")
    if record.get("heldout"):
        parts.append(f"held-out AVG {record['heldout']['avg_map_percent']:.2f} %")
    if best is not None:
        parts.append(f"selected on {selection}: epoch {best['epoch']}")
    return ", ".join(parts)


def epoch_line(entry: dict[str, Any], epochs: int) -> str:
    """One plain line per epoch without an evaluation, for output that is not a terminal: the mean training loss
    and its terms (``train.diagnostics``) and the epoch's seconds."""
    parts = [f"epoch {entry['epoch']}/{epochs}"]
    if entry.get("train_loss") is not None:
        terms = ", ".join(f"{k} {v:.4f}" for k, v in (entry.get("losses") or {}).items())
        parts.append(f"loss {entry['train_loss']:.4f}" + (f" ({terms})" if terms else ""))
    if entry.get("train_s") is not None:
        parts.append(f"{entry['train_s']:.1f} s")
    return ", ".join(parts)


def progress_bar(console: Any) -> Any:
    """The progress display of ``rskp train`` and ``rskp-bench``: description, bar, count, elapsed time and ETA.

    Not transient: when it stops, the finished bars stay as they were last updated (complete, with the final
    loss and evaluation) and the next output starts on a new line, also where the terminal cannot erase lines.
    The ETA comes from every step since the task started (rich's default forgets steps older than 30 s, so a bar
    that advances once per finished benchmark run would never show one).
    """
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False, speed_estimate_period=10**7,
    )
