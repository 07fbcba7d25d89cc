"""Video-level classification mAP (docs/evaluation.md 3.5, 4.5)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError, ShapeError


def classification_map(scores: Any, labels: Any, *, interpolated: bool = False, skip_empty: bool = False) -> float:
    """Mean over classes of the average precision of ranking videos by score (W-TALC ``classificationMAP.py``).

    Per class, videos are ranked by ``argsort(-scores)`` (W-TALC's order, numpy's default sort); AP is the mean
    precision at the positive ranks (non-interpolated, W-TALC/RSKP), or the area under the precision envelope
    (``interpolated=True``, ActivityNet classification). Computed in float64; W-TALC's float32 accumulators
    differ by up to ~1e-7. Returns a fraction (W-TALC prints percent).

    Args:
        scores: (N, C) video-level class scores.
        labels: (N, C) multi-hot labels (nonzero = positive).
        interpolated: use the interpolated AP.
        skip_empty: leave classes without a positive video out of the mean (W-TALC returns NaN).

    Returns:
        The mAP in [0, 1].
    """
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels) != 0
    if s.ndim != 2 or y.shape != s.shape:
        raise ShapeError(f"scores and labels must both have shape (N, C), got {s.shape} and {np.shape(labels)}")
    if not np.isfinite(s).all():
        raise ShapeError("scores hold NaN/Inf values; check the model outputs")
    npos = y.sum(axis=0)
    empty = np.flatnonzero(npos == 0)
    if empty.size and not skip_empty:
        raise DataError(
            f"classes {empty.tolist()} have no positive video, so their AP is undefined; "
            "evaluate on videos that cover every class or pass skip_empty=True"
        )
    cols = np.flatnonzero(npos > 0)
    if cols.size == 0:
        raise DataError("no class has a positive video; check the labels")
    order = np.argsort(-np.ascontiguousarray(s[:, cols].T), axis=1)  # (C', N) per class, like W-TALC
    hit = np.take_along_axis(y[:, cols].T, order, axis=1)  # (C', N) positives in rank order
    cum = np.cumsum(hit, axis=1, dtype=np.float64)
    precision = cum / np.arange(1, s.shape[0] + 1)
    if interpolated:
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        ap = np.sum(envelope * hit, axis=1) / npos[cols]
    else:
        ap = np.sum(precision * hit, axis=1) / npos[cols]
    return float(ap.mean())
