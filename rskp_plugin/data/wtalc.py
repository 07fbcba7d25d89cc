"""The W-TALC file format (sujoyp/wtalc-pytorch and its descendants: 3C-Net, CO2-Net, RSKP, ...).

A dataset ``<Name>`` (``Thumos14reduced``, ``ActivityNet1.2``, ``ActivityNet1.3``) is stored as::

    <root>/<Name>-I3D-JOINTFeatures.npy      object array, one (T, 2048) float array per video
    <root>/<Name>-Annotations/               index-aligned .npy arrays over the same videos:
        videoname.npy  subset.npy  classlist.npy  duration.npy (N, 1)
        segments.npy (lists of [start, end] s)  labels.npy (one class name per segment)
        labels_all.npy (video-level class names)  [Ambiguous_test.txt]

THUMOS14-reduced trains on subset ``validation`` and tests on ``test``; ActivityNet trains on ``training`` and tests
on ``validation`` (``default_subsets``). Seconds <-> snippets use ``snippets_per_second`` (25/16 for I3D features:
16 frames at 25 fps), a setting of the loader: ``extracted_fps.npy`` is NOT read, it describes the older
UntrimmedNet features (10 for every THUMOS14 video).

Only the feature file, ``segments.npy``, ``labels.npy`` and ``labels_all.npy`` are unpickled: their entries are
ragged per-video lists, which numpy can only store as object arrays (pickles, which can run code: use files you
trust). The other files must be plain arrays; a pickle there is refused with a ``DataError``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import DataError
from ._checks import (
    ON_ERROR,
    OUT_OF_RANGE,
    ExpectedWidth,
    VideoProblem,
    build_record,
    check_choice,
    check_features,
    check_segments,
    class_indices,
    fail,
    require_file,
    width_of,
)
from ._npy import load_npy
from .records import I3D_SNIPPETS_PER_SECOND, DataWarning, VideoDataset, summarize_skipped

ANNOTATION_FILES = ("videoname", "subset", "classlist", "duration", "segments", "labels", "labels_all")
#: Annotation files whose format needs object arrays (ragged per-video lists), which numpy stores as pickles. These
#: and the feature file (one (T, D) array per video) are the only W-TALC files unpickled; the others must be plain
#: arrays (strings as bytes, durations as floats), as in the original files.
PICKLED_ANNOTATIONS = ("segments", "labels", "labels_all")
PICKLED_DESCRIPTION = "the feature file, segments.npy, labels.npy and labels_all.npy"
AMBIGUOUS_FILE = "Ambiguous_test.txt"


def default_subsets(dataset_name: str) -> tuple[str, str]:
    """``(train subset, test subset)`` of a W-TALC dataset: THUMOS14 trains on validation, ActivityNet on training."""
    if dataset_name.lower().startswith("activitynet"):
        return "training", "validation"
    return "validation", "test"


def features_path(root: str | os.PathLike, dataset_name: str) -> Path:
    """``<root>/<Name>-I3D-JOINTFeatures.npy``."""
    return Path(root) / f"{dataset_name}-I3D-JOINTFeatures.npy"


def annotations_path(root: str | os.PathLike, dataset_name: str) -> Path:
    """``<root>/<Name>-Annotations`` if it exists, else ``root`` itself (annotation files lying beside the features)."""
    nested = Path(root) / f"{dataset_name}-Annotations"
    return nested if nested.is_dir() else Path(root)


def _text(x: object) -> str:
    return x.decode("utf-8") if isinstance(x, (bytes, np.bytes_)) else str(x)


def _items(x: object) -> list:
    """A W-TALC per-video entry (list, tuple, array or None) as a list."""
    if x is None:
        return []
    if isinstance(x, (str, bytes, np.bytes_)):
        return [x]
    return list(x)


def _load(path: Path, *, pickled: bool) -> np.ndarray:
    """One W-TALC ``.npy`` file; unpickled only if ``pickled`` (a format of ragged per-video entries)."""
    return load_npy(path, "W-TALC file", pickled=pickled, pickled_files=PICKLED_DESCRIPTION)


def read_ambiguous(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """THUMOS ``Ambiguous_test.txt``: lines ``<video> <start> <end>`` (split on any whitespace) -> video: (k, 2) s."""
    out: dict[str, list[list[float]]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            try:  # exactly three fields, as rskp_plugin.evaluation.load_ambiguous reads the same file
                if len(fields) != 3:
                    raise ValueError(f"{len(fields)} fields")
                start, end = float(fields[1]), float(fields[2])
            except ValueError as exc:
                raise DataError(
                    f"{path}, line {number}: expected '<video> <start> <end>', got {line.strip()!r}"
                ) from exc
            out.setdefault(fields[0], []).append([start, end])
    return {name: np.asarray(segs, dtype=np.float64).reshape(-1, 2) for name, segs in out.items()}


def load_wtalc(
    root: str | os.PathLike,
    dataset_name: str = "Thumos14reduced",
    subset: str = "validation",
    *,
    snippets_per_second: float = I3D_SNIPPETS_PER_SECOND,
    on_error: str = "raise",
    out_of_range: str = "error",
    annotations_dir: str | os.PathLike | None = None,
    feature_dim: int | None = None,
) -> VideoDataset:
    """Read one subset of a W-TALC dataset, validating every video.

    Args:
        root: folder holding ``<Name>-I3D-JOINTFeatures.npy`` and ``<Name>-Annotations/``.
        dataset_name: ``<Name>`` in the file names.
        subset: which rows to keep (the ``subset.npy`` value; see ``default_subsets``).
        snippets_per_second: seconds <-> snippets factor; 25/16 for I3D features (16 frames at 25 fps).
        on_error: ``"raise"`` a ``DataError`` naming the file and video at the first bad video, or ``"skip"`` bad
            videos (a video with no features, NaN/Inf, a feature width unlike the others', an unknown label, a
            segment outside the video) and warn once with a count; ``dataset.skipped`` lists them with reasons.
        out_of_range: segments ending more than one snippet after the video: ``"error"`` (a bad video),
            ``"keep"`` (as annotated; the official evaluations keep them) or ``"clip"`` (clipped to the duration).
            The real THUMOS14 files have 33 such segments in 5 videos.
        annotations_dir: where the annotation ``.npy`` files are; default ``<root>/<Name>-Annotations`` or ``root``.
        feature_dim: the feature width D every video must have; default the most common width among the subset's
            videos (a video of another width is the bad one, wherever it is in the file).

    Returns:
        The subset's videos in file order, with ``ambiguous`` from ``Ambiguous_test.txt`` where present.
    """
    check_choice(on_error, ON_ERROR, name="on_error")
    check_choice(out_of_range, OUT_OF_RANGE, name="out_of_range")
    if snippets_per_second <= 0:
        raise DataError(f"snippets_per_second must be > 0, got {snippets_per_second}")
    ann_dir = Path(annotations_dir) if annotations_dir is not None else annotations_path(root, dataset_name)
    feat_path = features_path(root, dataset_name)
    hint = f"A W-TALC dataset {dataset_name!r} needs {feat_path.name} and {dataset_name}-Annotations/ in {root}."
    for stem in ANNOTATION_FILES:
        require_file(ann_dir / f"{stem}.npy", f"annotation file {stem}.npy", hint)
    require_file(feat_path, "feature file", hint)

    arrays = {stem: _load(ann_dir / f"{stem}.npy", pickled=stem in PICKLED_ANNOTATIONS) for stem in ANNOTATION_FILES}
    arrays["duration"] = np.asarray(arrays["duration"]).reshape(len(arrays["duration"]), -1)[:, 0]
    features = _load(feat_path, pickled=True)
    count = len(arrays["videoname"])
    per_video = [(k, v) for k, v in arrays.items() if k != "classlist"] + [(os.fspath(feat_path), features)]
    for stem, array in per_video:
        if len(array) != count:
            raise DataError(
                f"{stem if stem.endswith('.npy') else ann_dir / (stem + '.npy')} has {len(array)} entries but "
                f"videoname.npy has {count}; the files must be index-aligned (written together)"
            )
    class_names = tuple(_text(c) for c in arrays["classlist"])
    class_index = {name: i for i, name in enumerate(class_names)}
    subsets = np.array([_text(s) for s in arrays["subset"]])
    rows = np.flatnonzero(subsets == subset)
    if len(rows) == 0:
        raise DataError(
            f"{ann_dir / 'subset.npy'} has no video of subset {subset!r}; it has {sorted(set(subsets.tolist()))}"
        )

    widths = ExpectedWidth([w for w in map(width_of, (features[r] for r in rows)) if w is not None], feature_dim)
    videos, skipped, changed = [], [], 0
    for row in rows:
        name = _text(arrays["videoname"][row])
        try:
            feats = check_features(name, features[row], widths)
            labels_all = [_text(x) for x in _items(arrays["labels_all"][row])]
            label_idx = class_indices(labels_all, class_index, what="video label (labels_all.npy)")
            seg_names = [_text(x) for x in _items(arrays["labels"][row])]
            seg_idx = class_indices(seg_names, class_index, what="segment label (labels.npy)")
            raw_segments = list(_items(arrays["segments"][row]))
            if len(raw_segments) != len(seg_idx):
                raise VideoProblem(
                    f"{len(raw_segments)} segments (segments.npy) but {len(seg_idx)} labels (labels.npy)"
                )
            segments, keep, n_changed = check_segments(
                raw_segments,
                float(arrays["duration"][row]),
                snippets_per_second=snippets_per_second,
                out_of_range=out_of_range,
            )
        except VideoProblem as problem:
            if on_error == "raise":
                raise fail(f"{feat_path} / {ann_dir}", name, problem) from None
            skipped.append((name, str(problem)))
            continue
        changed += n_changed
        videos.append(
            build_record(
                name, feats, label_idx, len(class_names), arrays["duration"][row], segments, seg_idx[keep]
            )
        )

    ambiguous = {}
    if (ann_dir / AMBIGUOUS_FILE).is_file():
        keep_names = {v.name for v in videos}
        ambiguous = {k: v for k, v in read_ambiguous(ann_dir / AMBIGUOUS_FILE).items() if k in keep_names}
    summarize_skipped(f"{dataset_name}/{subset}", skipped, len(rows))
    if changed:
        warnings.warn(
            f"{dataset_name}/{subset}: clipped {changed} segments ending after their video "
            "(dropped those starting after it)",
            DataWarning,
            stacklevel=2,
        )
    return VideoDataset(
        name=dataset_name,
        subset=subset,
        class_names=class_names,
        videos=tuple(videos),
        snippets_per_second=snippets_per_second,
        ambiguous=ambiguous,
        skipped=tuple(skipped),
    )


def _object_array(items: Iterable[object]) -> np.ndarray:
    items = list(items)
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):  # element-wise: np.array would merge equal-length lists into a 2-D array
        out[i] = item
    return out


def write_wtalc(
    train: VideoDataset,
    test: VideoDataset,
    out_dir: str | os.PathLike,
    dataset_name: str = "Thumos14reduced",
) -> Path:
    """Write two subsets in the W-TALC format so that ``load_wtalc`` (and W-TALC code) reads both back.

    Rows are ``train`` then ``test`` videos; labels are stored by name (``labels_all`` from the multi-hot labels),
    segments as Python lists of ``[start, end]`` seconds, durations as an (N, 1) array. ``Ambiguous_test.txt``
    holds both subsets' ambiguous segments (empty if none).

    Returns:
        The folder written (``out_dir``).
    """
    if train.class_names != test.class_names:
        raise DataError("write_wtalc: train and test must have the same class list")
    if train.feature_dim and test.feature_dim and train.feature_dim != test.feature_dim:
        raise DataError(f"write_wtalc: feature widths differ ({train.feature_dim} vs {test.feature_dim})")
    if train.subset == test.subset:
        raise DataError(f"write_wtalc: both subsets are called {train.subset!r}; load_wtalc could not tell them apart")
    out = Path(out_dir)
    ann = out / f"{dataset_name}-Annotations"
    try:
        ann.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {ann}: {exc}; choose another output folder") from exc
    rows = [(v, ds.subset) for ds in (train, test) for v in ds.videos]
    names = train.class_names
    np.save(ann / "videoname.npy", np.array([v.name.encode("utf-8") for v, _ in rows]))
    np.save(ann / "subset.npy", np.array([s.encode("utf-8") for _, s in rows]))
    np.save(ann / "classlist.npy", np.array([c.encode("utf-8") for c in names]))
    np.save(ann / "duration.npy", np.array([[v.duration] for v, _ in rows], dtype=np.float64).reshape(-1, 1))
    np.save(ann / "segments.npy", _object_array(v.segments.tolist() for v, _ in rows), allow_pickle=True)
    np.save(
        ann / "labels.npy",
        _object_array([names[c] for c in v.segment_labels.tolist()] for v, _ in rows),
        allow_pickle=True,
    )
    np.save(
        ann / "labels_all.npy",
        _object_array([names[c] for c in np.flatnonzero(v.labels > 0).tolist()] for v, _ in rows),
        allow_pickle=True,
    )
    with open(ann / AMBIGUOUS_FILE, "w", encoding="utf-8") as handle:
        for ds in (train, test):
            for name, segs in ds.ambiguous.items():
                for s, e in segs.tolist():
                    handle.write(f"{name}  {s!r} {e!r}\n")
    np.save(features_path(out, dataset_name), _object_array(v.features for v, _ in rows), allow_pickle=True)
    return out
