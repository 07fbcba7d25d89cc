"""Validation shared by the loaders: every problem names the file and the video and says what to do."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import DataError
from .records import DataWarning, VideoRecord, summarize_skipped

ON_ERROR = ("raise", "skip")
OUT_OF_RANGE = ("error", "keep", "clip")


class VideoProblem(Exception):
    """One video cannot be used as it is (raised inside a loader, turned into ``DataError`` or a skip)."""


def check_choice(value: str, allowed: Sequence[str], *, name: str) -> None:
    """Raise ``DataError`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise DataError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def check_loader_options(on_error: str, out_of_range: str, snippets_per_second: float) -> None:
    """Raise ``DataError`` for a loader option out of its range (checked before any file is read)."""
    check_choice(on_error, ON_ERROR, name="on_error")
    check_choice(out_of_range, OUT_OF_RANGE, name="out_of_range")
    if snippets_per_second <= 0:
        raise DataError(f"snippets_per_second must be > 0, got {snippets_per_second}")


def validate_videos(
    names: Sequence[str],
    read_video: Callable[[int], tuple[VideoRecord, int]],
    *,
    on_error: str,
    where: str,
    label: str,
    out_of_range: str = "clip",
) -> tuple[list[VideoRecord], list[tuple[str, str]]]:
    """The outline every loader shares: build each video, raise or skip the bad ones, warn once about the rest.

    Args:
        names: the videos to read, in the order of the dataset.
        read_video: ``i -> (record, number of segments clipped)`` of video ``names[i]``; raises ``VideoProblem``
            for a bad video.
        on_error: ``"raise"`` a ``DataError`` naming ``where`` and the video at the first bad one, or ``"skip"``
            bad videos with one ``DataWarning`` counting them.
        where: the files read, for the error.
        label: the dataset and subset, for the warnings.
        out_of_range: the loader's setting, for the warning that counts the segments outside their video.

    Returns:
        ``(records of the good videos, (name, reason) of each skipped one)``; a ``DataWarning`` counts the segments
        clipped, or kept as annotated though they end after their video, if any.
    """
    videos, skipped, changed = [], [], 0
    for i, name in enumerate(names):
        try:
            record, n_changed = read_video(i)
        except VideoProblem as problem:
            if on_error == "raise":
                raise fail(where, name, problem) from None
            skipped.append((name, str(problem)))
            continue
        changed += n_changed
        videos.append(record)
    summarize_skipped(label, skipped, len(names), stacklevel=4)  # blames the loader's caller
    if changed and out_of_range == "keep":
        warnings.warn(
            f"{label}: kept {changed} segments ending after their video as annotated (the official evaluations keep "
            "them; the real THUMOS14 files have 33); out_of_range='clip' clips them",
            DataWarning,
            stacklevel=3,
        )
    elif changed:
        warnings.warn(
            f"{label}: clipped {changed} segments ending after their video (dropped those starting after it)",
            DataWarning,
            stacklevel=3,
        )
    return videos, skipped


class ExpectedWidth:
    """The feature width D every video must have: ``feature_dim`` when given, else the most common width.

    Deciding by the majority (not by the first video) blames the odd video whatever its position: with
    ``on_error="skip"`` the odd one is skipped, not the good ones. Ties go to the width seen first.

    Args:
        widths: the widths of the videos whose features are (T, D) arrays, in file order.
        feature_dim: the width to expect, if known (e.g. from a config); None decides by the majority.
    """

    def __init__(self, widths: Sequence[int], feature_dim: int | None = None) -> None:
        if feature_dim is not None:
            self.width: int | None = int(feature_dim)
            self.reason = f"the feature_dim {feature_dim} asked for"
        else:
            counts = Counter(widths)  # ordered by first appearance: most_common breaks ties by it
            self.width, count = counts.most_common(1)[0] if counts else (None, 0)
            self.reason = f"the {self.width} of most videos ({count} of {len(widths)})"

    def check(self, width: int) -> None:
        """Raise ``VideoProblem`` unless ``width`` is the expected one."""
        if self.width is not None and width != self.width:
            raise VideoProblem(
                f"feature width {width} differs from {self.reason}; every video must use the same feature extractor"
            )


def width_of(features: Any) -> int | None:
    """D of a (T, D) array with T, D >= 1, else None (left to ``check_features`` to describe)."""
    shape = getattr(features, "shape", None)
    return int(shape[1]) if isinstance(shape, tuple) and len(shape) == 2 and min(shape) > 0 else None


def check_features(name: str, features: Any, widths: ExpectedWidth) -> np.ndarray:
    """(T, D) float32 features of one video, or ``VideoProblem`` (missing, empty, wrong rank, NaN/Inf, width)."""
    if features is None:
        raise VideoProblem("has no features")
    try:
        array = np.asarray(features, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise VideoProblem(f"features are not a numeric array ({exc})") from exc
    if array.ndim != 2:
        raise VideoProblem(f"features must be a (T, D) array, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise VideoProblem(f"has no features (shape {array.shape})")
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1))
        raise VideoProblem(
            f"features hold {int((~finite).sum())} NaN/Inf values in snippets {bad[:5].tolist()}"
            f"{' ...' if len(bad) > 5 else ''}; re-extract the features of this video or skip it"
        )
    widths.check(int(array.shape[1]))
    return array


def class_indices(labels: Sequence[str], class_index: Mapping[str, int], *, what: str) -> np.ndarray:
    """Map class names to indices, or ``VideoProblem`` naming the unknown label."""
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        if label not in class_index:
            known = ", ".join(list(class_index)[:6])
            raise VideoProblem(f"{what} {label!r} is not in the class list ({known}, ...)")
        out[i] = class_index[label]
    return out


def check_segments(
    segments: Any, duration: float, *, snippets_per_second: float, out_of_range: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate (K, 2) segments in seconds against the video's duration.

    A segment is malformed if it is not finite, starts before 0 or does not end after its start; it lies outside
    the video if it ends more than one snippet (1 / snippets_per_second s, the snippet grid's resolution) after
    ``duration``. ``out_of_range`` decides what happens to those: ``"error"`` (a ``VideoProblem``), ``"keep"``
    (kept as annotated, as the official evaluations do) or ``"clip"`` (clipped to the duration; a segment that
    starts after the end is dropped).

    Returns:
        ``(segments (K', 2) float64, keep (K,) bool mask of the original segments kept, number of segments outside
        the video: clipped or dropped with "clip", kept as annotated with "keep")``.
    """
    try:
        array = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as exc:
        raise VideoProblem(f"segments are not [start, end] pairs ({exc})") from exc
    keep = np.ones(len(array), dtype=bool)
    if not np.isfinite(array).all():
        raise VideoProblem("segments hold NaN/Inf bounds")
    bad = np.flatnonzero((array[:, 0] < 0) | (array[:, 1] <= array[:, 0]))
    if len(bad):
        s, e = array[bad[0]]
        raise VideoProblem(f"segment {bad[0]} [{s}, {e}] s is malformed (start must be >= 0 and < end)")
    if not np.isfinite(duration) or duration <= 0:
        raise VideoProblem(f"duration {duration} s is not a positive number")
    outside = np.flatnonzero(array[:, 1] > duration + 1.0 / snippets_per_second)
    if len(outside) == 0:
        return array, keep, 0
    if out_of_range == "keep":  # counted: the loader warns once with the total
        return array, keep, len(outside)
    if out_of_range == "error":
        s, e = array[outside[0]]
        raise VideoProblem(
            f"{len(outside)} segment(s) end after the video's {duration:.2f} s, e.g. segment {outside[0]} "
            f"[{s}, {e}] s; pass out_of_range='keep' to keep them as annotated (the official evaluations do), "
            "'clip' to clip them to the video, or on_error='skip' to skip such videos"
        )
    clipped = array.copy()
    clipped[outside, 1] = duration
    keep = clipped[:, 0] < clipped[:, 1]
    return clipped[keep], keep, len(outside)


def multi_hot(indices: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) float32 multi-hot vector of the given class indices."""
    out = np.zeros(num_classes, dtype=np.float32)
    out[indices] = 1.0
    return out


def build_record(
    name: str,
    features: np.ndarray,
    label_indices: np.ndarray,
    num_classes: int,
    duration: float,
    segments: np.ndarray,
    segment_labels: np.ndarray,
) -> VideoRecord:
    """A ``VideoRecord`` from already validated pieces."""
    return VideoRecord(
        name=name,
        features=features,
        labels=multi_hot(label_indices, num_classes),
        duration=float(duration),
        segments=segments,
        segment_labels=segment_labels,
    )


def fail(source: str, name: str, problem: VideoProblem, hint: str = "") -> DataError:
    """The ``DataError`` for a video problem under ``on_error="raise"``."""
    advice = hint or ("Fix the file, or skip such videos: on_error='skip' (on the command line: "
                      "--set data.on_error=skip).")
    tail = "" if "on_error" in str(problem) else " " + advice
    return DataError(f"{source}: video {name}: {problem}.{tail}")
