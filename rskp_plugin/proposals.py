"""The building blocks of :mod:`rskp_plugin.localization`: linear upsampling, the runs of a binarised signal, their
outer-inner contrast (OIC) scores, and greedy NMS per (video, class) group. Never imports model code.

See :mod:`rskp_plugin.localization` for the index conventions (runs ``s .. e-1``, inner mean over ``[s, e + o)``,
the flanks) that these functions implement.
"""

from __future__ import annotations

import numpy as np

from .localization_settings import LocalizationSettings


def upsample_linear(x: np.ndarray, scale: int) -> np.ndarray:
    """Linear upsampling along axis 0 at positions ``arange(0, T, 1/scale)``, extrapolating past ``T - 1``.

    Shapes: x (T, ...) -> (T * scale, ...). Same numbers as WUM's ``upgrade_resolution`` (scipy ``interp1d``).
    """
    if scale == 1:
        return x
    length = x.shape[0]
    pos = np.arange(0, length, 1 / scale)  # WUM's sampling grid, literally
    if length == 1:
        return np.repeat(x, len(pos), axis=0)
    lo = np.minimum(np.floor(pos).astype(np.int64), length - 2)  # (T*scale,) left neighbour, extrapolate at the end
    frac = pos - lo
    rows = np.minimum(np.arange(length), length - 2)
    if len(pos) == length * scale and np.array_equal(lo, np.repeat(rows, scale)):
        # the usual grid: ``scale`` positions per snippet, so slope and left value broadcast over (T, scale, ...)
        # instead of being gathered for every position (the same operations on the same operands)
        slope = (x[1:] - x[:-1])[rows][:, None]
        out = slope * frac.reshape((length, scale) + (1,) * (x.ndim - 1)) + x[rows][:, None]
        return out.reshape((length * scale,) + x.shape[1:])
    frac = frac.reshape((-1,) + (1,) * (x.ndim - 1))
    slope = x[lo + 1] - x[lo]
    return slope * frac + x[lo]


def find_runs(active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of True along the last axis. active (C, K, T) -> class, threshold, start, end (exclusive).

    Runs come out ordered by class, then threshold, then start (the official codes' order).
    """
    n_cls, n_thr, length = active.shape
    padded = np.zeros((n_cls, n_thr, length + 2), dtype=bool)
    padded[..., 1:-1] = active
    flips = np.flatnonzero(padded[..., 1:] != padded[..., :-1])  # run starts and ends alternate in each row
    row, start = np.divmod(flips[0::2], length + 1)
    end = flips[1::2] - row * (length + 1)
    c, k = np.divmod(row, n_thr)
    return c, k, start, end


def oic_scores(
    csum: np.ndarray, row: np.ndarray, s: np.ndarray, e: np.ndarray, length: int, settings: LocalizationSettings
) -> np.ndarray:
    """Outer-inner contrast without the video-score term (docs/heads.md 1): mean(inner) - kappa * mean(flanks).

    Args:
        csum: (R, T+1) cumulative sums (leading 0) of the scoring signal; ``row`` selects one per proposal.
        row: (N,) row of ``csum`` for each proposal.
        s: (N,) run starts; e: (N,) exclusive run ends.
        length: T, the number of positions.
        settings: inflation (rho), outer_weight (kappa), inner_includes_next (o).

    Returns:
        (N,) scores.
    """
    o = 1 if settings.inner_includes_next else 0
    run_len = e - s
    inner_end = np.minimum(e + o, length)
    inner = (csum[row, inner_end] - csum[row, s]) / (inner_end - s)
    rho = settings.inflation
    left = np.maximum(0, np.floor(s - rho * run_len)).astype(np.int64)
    if o:
        right_end = np.minimum(length - 1, np.floor(e + rho * run_len + 1)).astype(np.int64)
    else:
        right_end = np.minimum(length - 1, np.floor((e - 1) + rho * run_len)).astype(np.int64) + 1
    right_begin = np.minimum(e + o, length)
    right_end = np.maximum(right_end, right_begin)
    n_out = (s - left) + (right_end - right_begin)
    out_sum = (csum[row, s] - csum[row, left]) + (csum[row, right_end] - csum[row, right_begin])
    outer = np.divide(out_sum, n_out, out=np.zeros_like(out_sum), where=n_out > 0)
    return inner - settings.outer_weight * outer


def cumsum0(x: np.ndarray) -> np.ndarray:
    """Cumulative sums along the last axis with a leading 0: (..., T) -> (..., T+1)."""
    out = np.zeros(x.shape[:-1] + (x.shape[-1] + 1,), dtype=np.float64)
    np.cumsum(x, axis=-1, out=out[..., 1:])
    return out


def nms(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, *, threshold: float, overlap: str = "iou",
        inclusive: bool = True) -> np.ndarray:
    """Greedy 1-D NMS in the official order (``argsort(scores)[::-1]``, numpy's default sort).

    Args:
        starts: (N,) segment starts.
        ends: (N,) segment ends.
        scores: (N,) scores.
        threshold: suppression threshold.
        overlap: "iou": intersection / union, suppress when >= threshold (WUM); "suppressed_length":
            intersection / length of the lower-scored segment, suppress when > threshold (RSKP).
        inclusive: lengths and intersections counted as ``e - s + 1`` (both official codes).

    Returns:
        (K,) indices of the kept segments, in pick order (descending score).
    """
    bounds = np.array([0, len(scores)])
    return grouped_nms(starts, ends, scores, bounds, threshold=threshold, overlap=overlap, inclusive=inclusive)


#: Up to this many non-empty groups ``grouped_nms`` runs them one by one on shrinking candidate lists (each step is
#: a few operations on the survivors); beyond it, all groups at once on padded arrays. Both keep the same segments.
FEW_GROUPS = 8


def _nms_group(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, lo: int, hi: int, threshold: float,
               overlap: str, plus: float) -> np.ndarray:
    """Greedy NMS of the slice ``lo:hi`` (flat indices in pick order), with :func:`grouped_nms`'s arithmetic."""
    order = lo + np.argsort(scores[lo:hi])[::-1]  # the official sort (same ties as the official code)
    s, e = starts[order], ends[order]
    area = e - s + plus
    alive = np.arange(len(order))
    kept = []
    with np.errstate(divide="ignore", invalid="ignore"):
        while alive.size:
            best, rest = alive[0], alive[1:]  # the best remaining segment, and what it may suppress
            kept.append(best)
            inter = np.maximum(0.0, np.minimum(e[best], e[rest]) - np.maximum(s[best], s[rest]) + plus)
            if overlap == "iou":
                suppress = inter / (area[best] + area[rest] - inter) >= threshold
            else:
                suppress = inter / area[rest] > threshold
            alive = rest[~suppress]
    return order[np.asarray(kept, dtype=np.int64)]


def grouped_nms(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, bounds: np.ndarray, *, threshold: float,
                overlap: str = "iou", inclusive: bool = True) -> np.ndarray:
    """:func:`nms` in many groups at once (group j = the slice ``bounds[j]:bounds[j+1]``, e.g. one per class).

    The groups are padded into (G, N) arrays; each iteration keeps the best remaining segment of every group and
    suppresses what it overlaps, so the loop runs as often as the largest group keeps segments.

    Returns:
        Flat indices of the kept segments, group by group, each group in pick order.
    """
    sizes = np.diff(bounds)
    if sizes.sum() == 0:
        return np.zeros(0, dtype=np.int64)
    plus = 1.0 if inclusive else 0.0
    groups = np.flatnonzero(sizes)
    if len(groups) <= FEW_GROUPS:  # a few classes (the usual video): one group at a time, fewer operations
        return np.concatenate([_nms_group(starts, ends, scores, bounds[j], bounds[j + 1], threshold, overlap, plus)
                               for j in groups])
    order = np.full((len(sizes), int(sizes.max())), -1, dtype=np.int64)  # (G, N) flat index, by descending score
    for j in np.flatnonzero(sizes):  # the official per-group sort (same ties as the official code)
        order[j, :sizes[j]] = bounds[j] + np.argsort(scores[bounds[j]:bounds[j + 1]])[::-1]
    alive = order >= 0
    flat = np.where(alive, order, 0)
    s, e = starts[flat], ends[flat]
    area = e - s + plus
    kept = np.zeros_like(alive)
    while True:  # one iteration per kept segment of the largest group
        rows = np.flatnonzero(alive.any(axis=1))
        if rows.size == 0:
            break
        col = alive[rows].argmax(axis=1)  # best remaining segment of each group
        kept[rows, col] = True
        si, ei, ai = s[rows, col][:, None], e[rows, col][:, None], area[rows, col][:, None]
        inter = np.maximum(0.0, np.minimum(ei, e[rows]) - np.maximum(si, s[rows]) + plus)  # (G', N)
        with np.errstate(divide="ignore", invalid="ignore"):
            if overlap == "iou":
                suppress = inter / (ai + area[rows] - inter) >= threshold
            else:
                suppress = inter / area[rows] > threshold
        suppress[np.arange(rows.size), col] = True
        alive[rows] &= ~suppress
    r, c = np.nonzero(kept)  # row-major: group by group, columns in pick order
    return order[r, c]
