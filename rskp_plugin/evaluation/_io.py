"""Reading and validating ground truth, predictions and ambiguous segments (evaluation.md 3.1, 4.1, 4.3).

Everything is turned into flat numpy arrays once; the matching code never touches JSON objects.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from ..errors import DataError

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
    """

    source: str
    videos: tuple[str, ...]
    class_names: tuple[str, ...]
    video: np.ndarray
    label: np.ndarray
    start: np.ndarray
    end: np.ndarray
    subsets: tuple[Any, ...] = ()


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
    """

    source: str
    videos: tuple[str, ...]
    video: np.ndarray
    label: np.ndarray
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray


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


def _load_json(obj: Mapping[str, Any] | PathLike, what: str, key: str) -> tuple[dict[str, Any], str]:
    """Return (object, source name) for a JSON object or the path of a JSON file holding one with ``key``."""
    if isinstance(obj, Mapping):
        data, source = obj, f"<{what} object>"
    else:
        source = str(obj)
        path = Path(obj)
        if not path.is_file():
            raise DataError(f"{what} file {source} does not exist; check the path (an ActivityNet-style JSON file)")
        try:
            with path.open(encoding="utf-8") as fh:
                data = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{what} file {source} is not valid JSON ({exc}); regenerate or fix the file") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get(key), Mapping):
        raise DataError(
            f'{what} {source} has no "{key}" object; expected the ActivityNet {what} format '
            f'{{"{key}": {{video_id: ...}}}} (evaluation.md 3.1)'
        )
    return dict(data), source


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
def load_ground_truth(ground_truth: Mapping[str, Any] | PathLike, subset: str | None = None) -> GroundTruth:
    """Read an ActivityNet ground-truth object (``{"database": ...}``) or file.

    Args:
        ground_truth: the object or the path of its JSON file. Segment bounds may be numbers or numeric strings.
        subset: keep only videos whose ``"subset"`` equals this (THUMOS14 ``gt.json``: "test"); None keeps all.

    Returns:
        The flattened ground truth.
    """
    data, source = _load_json(ground_truth, "ground-truth", "database")
    database = data["database"]
    videos: list[str] = []
    labels: list[str] = []
    segments: list[Any] = []
    owner: list[int] = []
    seen_subsets = set()
    used_subsets = set()
    get_label, get_segment = itemgetter("label"), itemgetter("segment")
    for vid, record in database.items():
        if not isinstance(record, Mapping):
            raise DataError(f"{source}: video {vid!r} is not an object with \"annotations\"")
        seen_subsets.add(record.get("subset"))
        if subset is not None and record.get("subset") != subset:
            continue
        annotations = record.get("annotations")
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
    index_of = {name: i for i, name in enumerate(class_names)}
    start, end = _bounds(segments, "the database", source)
    return GroundTruth(
        source=source,
        videos=tuple(videos),
        class_names=class_names,
        video=np.asarray(owner, dtype=np.int64),
        label=np.fromiter(map(index_of.__getitem__, labels), dtype=np.int64, count=len(labels)),
        start=start,
        end=end,
        subsets=tuple(sorted(used_subsets, key=str)),
    )


@_bulk_objects()
def load_predictions(predictions: Mapping[str, Any] | PathLike, gt: GroundTruth) -> Predictions:
    """Read an ActivityNet results object (``{"results": ...}``) or file against the ground truth's classes.

    Raises:
        DataError: missing/malformed file, an entry without label/score/segment, a non-finite number, or a label
            that is not a ground-truth class (named with its video).
    """
    data, source = _load_json(predictions, "predictions", "results")
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

    try:
        label = np.fromiter(map(index_of.get, labels, repeat(-1, n)), dtype=np.int64, count=n)
    except TypeError:  # an unhashable label (list, dict): report it below like an unknown one
        label = np.asarray([index_of.get(name, -1) if isinstance(name, str) else -1 for name in labels], np.int64)
    if (label < 0).any():
        first = int(np.flatnonzero(label < 0)[0])
        shown = ", ".join(gt.class_names[:5]) + (", ..." if len(gt.class_names) > 5 else "")
        raise DataError(
            f"{source}: video {videos[video[first]]!r} has label {labels[first]!r}, which is not a ground-truth "
            f"class of {gt.source} ({len(gt.class_names)} classes: {shown}); rename it or drop those detections"
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
    return Predictions(source, tuple(videos), video, label, start, end, score)


def load_ambiguous(path: PathLike) -> dict[str, np.ndarray]:
    """Read W-TALC's ``Ambiguous_test.txt``: lines ``video start end`` (split on any whitespace).

    Returns:
        video id -> (k, 2) float64 array of [start, end] seconds.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"ambiguous-segment file {path} does not exist; pass the path of Ambiguous_test.txt")
    out: dict[str, list[tuple[float, float]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 3:
                raise ValueError("expected 3 fields")
            start, end = float(fields[1]), float(fields[2])
        except ValueError as exc:
            raise DataError(f"{path}:{number}: expected 'video start end', got {line!r}") from exc
        out.setdefault(fields[0], []).append((start, end))
    return {vid: np.asarray(segs, dtype=np.float64) for vid, segs in out.items()}


def load_wtalc_ground_truth(annotation_dir: PathLike, subset: str = "test") -> dict[str, Any]:
    """The W-TALC ``.npy`` annotations as an ActivityNet ground-truth object (evaluation.md 4.1).

    Only videos of ``subset`` with at least one segment are kept (THUMOS14 test: the 212 videos of W-TALC/RSKP).
    """
    root = Path(annotation_dir)
    arrays = {}
    for name in ("videoname", "subset", "segments", "labels"):
        file = root / f"{name}.npy"
        if not file.is_file():
            raise DataError(f"{file} does not exist; pass the folder of the W-TALC annotation .npy files")
        arrays[name] = np.load(file, allow_pickle=True)
    decode = (lambda x: x.decode() if isinstance(x, bytes) else str(x))
    database = {}
    for vid, sub, segs, labs in zip(arrays["videoname"], arrays["subset"], arrays["segments"], arrays["labels"]):
        if decode(sub) != subset or len(segs) == 0:
            continue
        database[decode(vid)] = {
            "subset": subset,
            "annotations": [{"segment": [float(s), float(e)], "label": decode(lab)} for (s, e), lab in zip(segs, labs)],
        }
    if not database:
        raise DataError(f"{root}: no video of subset {subset!r} has segments; W-TALC subsets are 'validation', 'test'")
    return {"version": "THUMOS14-reduced (W-TALC)", "taxonomy": [], "database": database}
