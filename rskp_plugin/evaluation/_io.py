"""Flattening and validating ground truth and predictions for scoring (docs/evaluation.md 3.1, 4.1, 4.2).

The files are read by ``rskp_plugin.formats`` (one reader per format, shared with ``data``).

Everything is turned into flat numpy arrays once; the matching code never touches JSON objects.
"""

from __future__ import annotations

import contextlib
import gc
import os
import warnings
from collections.abc import Mapping
from itertools import repeat
from operator import itemgetter
from typing import Any, Sequence

import attrs
import numpy as np

from ..errors import DataError
from ..formats.activitynet import class_taxonomy, read_activitynet_json, taxonomy_leaves
from ..formats.ambiguous import read_ambiguous
from ..formats.wtalc import read_wtalc_files, text

PathLike = str | os.PathLike


@attrs.frozen
class GroundTruth:
    """Flattened ground truth of one subset.

    Attributes:
        source: where it came from (file name or "<ground-truth object>"), for error messages.
        videos: video ids of the evaluated subset, in database order (also those without annotations).
        class_names: the evaluated classes (labels occurring in the subset), in order of first appearance.
        video: (G,) video index of each instance (into ``videos``), database then annotation order.
        label: (G,) class index of each instance (into ``class_names``).
        start: (G,) seconds.
        end: (G,) seconds.
        subsets: the "subset" values of the evaluated videos (None where a video has none), sorted as strings.
        known_classes: every class of the dataset: the labels of all videos (every subset) and the leaves of the
            file's ``taxonomy``. A prediction of a known class without ground truth in the evaluated videos changes
            no class's AP and is left out; any other label is an error.
    """

    source: str
    videos: tuple[str, ...]
    class_names: tuple[str, ...]
    video: np.ndarray
    label: np.ndarray
    start: np.ndarray
    end: np.ndarray
    subsets: tuple[Any, ...] = ()
    known_classes: tuple[str, ...] = ()


@attrs.frozen
class Predictions:
    """Flattened predictions in file order (video order, then list order).

    Attributes:
        source: file name or "<predictions object>".
        videos: every video id that appears: the ground truth's first (same indices), then the others.
        video: (P,) video index.
        label: (P,) class index into the ground truth's ``class_names``.
        start, end: (P,) seconds.
        score: (P,) float64.
        num_unscored: predictions left out because their class (a class of the dataset) has no ground truth in the
            evaluated videos.
    """

    source: str
    videos: tuple[str, ...]
    video: np.ndarray
    label: np.ndarray
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray
    num_unscored: int = 0


class EvaluationWarning(UserWarning):
    """Predictions or ground truth that are scored, but probably not as meant (e.g. no video id matches)."""


#: What ``compat=True`` (``rskp evaluate --compat``) does, for messages.
COMPAT_HINT = (
    "pass compat=True (rskp evaluate --compat) to score it as the official ActivityNet code does (its 0/0 tIoU "
    "matches a reversed segment to any segment of the same length)"
)


def _position(counts: Sequence[int], index: int) -> tuple[int, int]:
    """(block, row in the block) of element ``index`` of consecutive blocks of the given sizes."""
    ends = np.cumsum(counts)
    block = int(np.searchsorted(ends, index, side="right"))
    return block, index - int(ends[block] - counts[block])


@contextlib.contextmanager
def _bulk_objects():
    """Pause the cyclic garbage collector while many small Python objects are built (as ``pickle`` users do)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _bounds(segments: list[Any], where: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends of a list of [start, end] pairs (numbers or numeric strings), or a DataError."""
    n = len(segments)
    try:
        if set(map(len, segments)) - {2}:
            raise ValueError("a segment is not [start, end]")
        start = np.fromiter(map(itemgetter(0), segments), dtype=np.float64, count=n)
        end = np.fromiter(map(itemgetter(1), segments), dtype=np.float64, count=n)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: {where} has a segment that is not a pair of numbers [start, end] ({exc})") from exc
    if not (np.isfinite(start).all() and np.isfinite(end).all()):
        raise DataError(f"{source}: {where} has a NaN/Inf segment bound; fix the file")
    return start, end


@_bulk_objects()
def load_ground_truth(
    ground_truth: Mapping[str, Any] | PathLike, subset: str | None = None, *, compat: bool = False
) -> GroundTruth:
    """Read an ActivityNet ground-truth object (``{"database": ...}``) or file.

    Args:
        ground_truth: the object or the path of its JSON file. Segment bounds may be numbers or numeric strings.
        subset: keep only videos whose ``"subset"`` equals this (THUMOS14 ``gt.json``: "test"); None keeps all.
        compat: keep segments that end before they start (with an ``EvaluationWarning``), as the official code
            does; by default they are an error.

    Returns:
        The flattened ground truth.
    """
    data, source = read_activitynet_json(ground_truth, "ground-truth", "database", warning=EvaluationWarning)
    database = data["database"]
    videos: list[str] = []
    labels: list[str] = []
    segments: list[Any] = []
    owner: list[int] = []
    seen_subsets = set()
    used_subsets = set()
    other_labels: set[str] = set()  # the classes of videos outside the subset: still classes of the dataset
    get_label, get_segment = itemgetter("label"), itemgetter("segment")
    for vid, record in database.items():
        if not isinstance(record, Mapping):
            raise DataError(f"{source}: video {vid!r} is not an object with \"annotations\"")
        seen_subsets.add(record.get("subset"))
        annotations = record.get("annotations")
        if subset is not None and record.get("subset") != subset:
            if isinstance(annotations, list):
                other_labels.update(str(a["label"]) for a in annotations if isinstance(a, Mapping) and "label" in a)
            continue
        if not isinstance(annotations, list):
            raise DataError(f'{source}: video {vid!r} has no "annotations" list; add one (it may be empty)')
        used_subsets.add(record.get("subset"))
        index = len(videos)
        videos.append(str(vid))
        try:
            labels += map(get_label, annotations)
            segments += map(get_segment, annotations)
        except (KeyError, TypeError) as exc:
            raise DataError(
                f'{source}: video {vid!r} has an annotation without "label" and "segment" ({exc!r}); fix the file'
            ) from exc
        owner += [index] * len(annotations)
    if subset is not None and not videos:
        known = ", ".join(sorted(str(s) for s in seen_subsets))
        raise DataError(f'{source}: no video has subset "{subset}"; the file has: {known}. Pass one of those.')
    labels = list(map(str, labels))
    class_names = tuple(dict.fromkeys(labels))
    known_classes = tuple(dict.fromkeys([*class_names, *sorted(other_labels), *taxonomy_leaves(data.get("taxonomy"))]))
    index_of = {name: i for i, name in enumerate(class_names)}
    start, end = _bounds(segments, "the database", source)
    video = np.asarray(owner, dtype=np.int64)
    reversed_ = start > end
    if reversed_.any():
        first = int(np.flatnonzero(reversed_)[0])
        row = first - int(np.searchsorted(video, video[first]))  # annotations of a video are consecutive
        where = (f"{source}: video {videos[video[first]]!r}, annotation {row}: segment [{start[first]:g}, "
                 f"{end[first]:g}] ends before it starts ({int(reversed_.sum())} such segment(s))")
        if not compat:
            raise DataError(f"{where}; fix the file, or {COMPAT_HINT}")
        warnings.warn(f"{where}; scored as the official code does (compat)", EvaluationWarning, stacklevel=3)
    return GroundTruth(
        source=source,
        videos=tuple(videos),
        class_names=class_names,
        video=video,
        label=np.fromiter(map(index_of.__getitem__, labels), dtype=np.int64, count=len(labels)),
        start=start,
        end=end,
        subsets=tuple(sorted(used_subsets, key=str)),
        known_classes=known_classes,
    )


@_bulk_objects()
def load_predictions(
    predictions: Mapping[str, Any] | PathLike, gt: GroundTruth, *, compat: bool = False
) -> Predictions:
    """Read an ActivityNet results object (``{"results": ...}``) or file against the ground truth's classes.

    A prediction of a class of the dataset (``gt.known_classes``) without ground truth in the evaluated videos is
    left out (it changes no class's AP; ``num_unscored`` counts them). When no predicted video id is a ground-truth
    video, an ``EvaluationWarning`` gives the counts.

    Args:
        predictions: the object or the path of its JSON file.
        gt: the ground truth it is scored against.
        compat: score segments that end before they start (with an ``EvaluationWarning``) as the official code
            does; by default they are an error.

    Raises:
        DataError: missing/malformed file, an entry without label/score/segment, a non-finite number, a segment
            that ends before it starts (named with its video and row), or a label that is not a class of the
            dataset (named with its video).
    """
    data, source = read_activitynet_json(predictions, "predictions", "results", warning=EvaluationWarning)
    index_of = {name: i for i, name in enumerate(gt.class_names)}
    videos = list(gt.videos)
    video_index = {name: i for i, name in enumerate(videos)}
    counts: list[int] = []
    owners: list[int] = []
    labels: list[Any] = []
    scores: list[Any] = []
    segments: list[Any] = []
    get_label, get_score, get_segment = itemgetter("label"), itemgetter("score"), itemgetter("segment")
    for vid, dets in data["results"].items():  # C-level maps: this is the only pass over the Python objects
        if not isinstance(dets, list):
            raise DataError(f"{source}: results of video {vid!r} must be a list of detections")
        if vid not in video_index:
            video_index[vid] = len(videos)
            videos.append(str(vid))
        try:
            labels += map(get_label, dets)
            scores += map(get_score, dets)
            segments += map(get_segment, dets)
        except (KeyError, TypeError) as exc:
            raise DataError(
                f'{source}: video {vid!r} has a detection without "label", "score" and "segment" ({exc!r})'
            ) from exc
        owners.append(video_index[vid])
        counts.append(len(dets))
    n = len(labels)
    video = np.repeat(np.asarray(owners, dtype=np.int64), counts)

    def culprit(bad: np.ndarray) -> str:
        return videos[video[int(np.flatnonzero(bad)[0])]]

    # -1: not scored (a class of the dataset without GT in the evaluated videos); -2: not a class of the dataset
    index_of = {**{name: -1 for name in gt.known_classes}, **index_of}
    try:
        label = np.fromiter(map(index_of.get, labels, repeat(-2, n)), dtype=np.int64, count=n)
    except TypeError:  # an unhashable label (list, dict): report it below like an unknown one
        label = np.asarray([index_of.get(name, -2) if isinstance(name, str) else -2 for name in labels], np.int64)
    if (label == -2).any():
        first = int(np.flatnonzero(label == -2)[0])
        known = gt.known_classes or gt.class_names
        shown = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
        raise DataError(
            f"{source}: video {videos[video[first]]!r} has label {labels[first]!r}, which is not a class of "
            f"{gt.source} ({len(known)} classes: {shown}); rename it or drop those detections (a ground truth "
            "holding only some classes can list them all in its \"taxonomy\")"
        )
    try:
        score = np.fromiter(scores, dtype=np.float64, count=n)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: a score is not a number ({exc}); fix the file") from exc
    if not np.isfinite(score).all():
        raise DataError(f"{source}: video {culprit(~np.isfinite(score))!r} has a NaN/Inf score; fix the file")
    try:
        well_formed = not set(map(len, segments)) - {2}
    except TypeError as exc:
        raise DataError(f"{source}: a segment is not a list [start, end] ({exc}); fix the file") from exc
    if not well_formed:
        sizes = np.fromiter(map(len, segments), dtype=np.int64, count=n)
        raise DataError(f"{source}: video {culprit(sizes != 2)!r} has a segment that is not [start, end]")
    try:
        start = np.fromiter(map(itemgetter(0), segments), dtype=np.float64, count=n)
        end = np.fromiter(map(itemgetter(1), segments), dtype=np.float64, count=n)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: a segment bound is not a number ({exc}); fix the file") from exc
    bad = ~(np.isfinite(start) & np.isfinite(end))
    if bad.any():
        raise DataError(f"{source}: video {culprit(bad)!r} has a NaN/Inf segment bound; fix the file")
    reversed_ = start > end
    if reversed_.any():
        first = int(np.flatnonzero(reversed_)[0])
        _, row = _position(counts, first)
        where = (f"{source}: video {videos[video[first]]!r}, detection {row}: segment [{start[first]:g}, "
                 f"{end[first]:g}] ends before it starts ({int(reversed_.sum())} such detection(s))")
        if not compat:
            raise DataError(f"{where}; fix the file, or {COMPAT_HINT}")
        warnings.warn(f"{where}; scored as the official code does (compat)", EvaluationWarning, stacklevel=3)
    predicted = np.unique(video)
    if len(predicted) and not (predicted < len(gt.videos)).any():
        warnings.warn(
            f"{source}: none of its {len(predicted)} predicted video ids is one of the {len(gt.videos)} "
            f"ground-truth videos of {gt.source} (e.g. {videos[predicted[0]]!r} vs "
            f"{gt.videos[0] if gt.videos else None!r}), so every prediction is a false positive; check the video "
            "names (and --subset)",
            EvaluationWarning,
            stacklevel=3,
        )
    scored = label >= 0
    if not scored.all():
        video, label, start, end, score = (a[scored] for a in (video, label, start, end, score))
    return Predictions(source, tuple(videos), video, label, start, end, score, num_unscored=int((~scored).sum()))


#: ``Ambiguous_test.txt`` has one reader, shared with ``data.load_wtalc``; this is its name in ``evaluation``.
load_ambiguous = read_ambiguous


def load_wtalc_ground_truth(annotation_dir: PathLike, subset: str = "test") -> dict[str, Any]:
    """The W-TALC ``.npy`` annotations as an ActivityNet ground-truth object (docs/evaluation.md 4.1).

    Only videos of ``subset`` with at least one segment are kept (THUMOS14 test: the 212 videos of W-TALC/RSKP).
    The ``taxonomy`` lists every class of ``classlist.npy``, so predictions of a class without ground truth in the
    subset are left out rather than refused. Only ``segments.npy`` and ``labels.npy`` are unpickled (their format
    needs object arrays); ``videoname``, ``subset`` and ``classlist`` must be plain arrays.
    """
    arrays = read_wtalc_files(annotation_dir, ("videoname", "subset", "segments", "labels", "classlist"))
    classes = [text(c) for c in arrays["classlist"]]
    if len(set(classes)) != len(classes):
        twice = sorted({c for c in classes if classes.count(c) > 1})[:5]
        raise DataError(f"{os.fspath(annotation_dir)}: classlist.npy names a class twice ({', '.join(twice)}); "
                        "each class must be listed once")
    names = [text(v) for v, s in zip(arrays["videoname"], arrays["subset"]) if text(s) == subset]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})[:5]
        raise DataError(f"{os.fspath(annotation_dir)}: videoname.npy names a video of subset {subset!r} twice "
                        f"({', '.join(twice)}); their ground truth would be merged. Give every video its own name")
    database = {}
    for vid, sub, segs, labs in zip(arrays["videoname"], arrays["subset"], arrays["segments"], arrays["labels"]):
        if text(sub) != subset or len(segs) == 0:
            continue
        database[text(vid)] = {
            "subset": subset,
            "annotations": [{"segment": [float(s), float(e)], "label": text(lab)} for (s, e), lab in zip(segs, labs)],
        }
    if not database:
        raise DataError(
            f"{os.fspath(annotation_dir)}: no video of subset {subset!r} has segments; W-TALC subsets are "
            "'validation', 'test'"
        )
    taxonomy = class_taxonomy(classes)
    return {"version": "THUMOS14-reduced (W-TALC)", "taxonomy": taxonomy, "database": database}
