"""Loading W-TALC datasets into ``VideoDataset``s (the file layout and its reader: ``rskp_plugin.formats.wtalc``).

THUMOS14-reduced trains on subset ``validation`` and tests on ``test``; ActivityNet trains on ``training`` and tests
on ``validation`` (``default_subsets``). Seconds <-> snippets use ``snippets_per_second`` (25/16 for I3D features:
16 frames at 25 fps), a setting of the loader: ``extracted_fps.npy`` is NOT read, it describes the older
UntrimmedNet features (10 for every THUMOS14 video).

Which files are unpickled, and why, is said in ``rskp_plugin.formats.wtalc``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import DataError
from ..formats.ambiguous import AMBIGUOUS_FILE, read_ambiguous
from ..formats.wtalc import (
    ANNOTATION_FILES,
    FEATURES,
    PICKLED_ANNOTATIONS,
    annotations_path,
    default_subsets,
    features_path,
    items,
    read_wtalc_files,
    text,
)
from ._atomic import atomic_file, save_npy
from ._checks import (
    ExpectedWidth,
    VideoProblem,
    build_record,
    check_features,
    check_loader_options,
    check_segments,
    class_indices,
    validate_videos,
    width_of,
)
from .records import I3D_SNIPPETS_PER_SECOND, VideoDataset, VideoRecord, duplicates

__all__ = [
    "ANNOTATION_FILES",
    "PICKLED_ANNOTATIONS",
    "annotations_path",
    "default_subsets",
    "features_path",
    "load_wtalc",
    "read_ambiguous",
    "write_wtalc",
]


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
    check_loader_options(on_error, out_of_range, snippets_per_second)
    ann_dir = Path(annotations_dir) if annotations_dir is not None else annotations_path(root, dataset_name)
    feat_path = features_path(root, dataset_name)
    hint = f"A W-TALC dataset {dataset_name!r} needs {feat_path.name} and {dataset_name}-Annotations/ in {root}."
    arrays = read_wtalc_files(ann_dir, ANNOTATION_FILES, features=feat_path, hint=hint)
    features = arrays.pop(FEATURES)
    arrays["duration"] = np.asarray(arrays["duration"]).reshape(len(arrays["duration"]), -1)[:, 0]
    count = len(arrays["videoname"])
    per_video = [(k, v) for k, v in arrays.items() if k != "classlist"] + [(os.fspath(feat_path), features)]
    for stem, array in per_video:
        if len(array) != count:
            raise DataError(
                f"{stem if stem.endswith('.npy') else ann_dir / (stem + '.npy')} has {len(array)} entries but "
                f"videoname.npy has {count}; the files must be index-aligned (written together)"
            )
    class_names = tuple(text(c) for c in arrays["classlist"])
    if len(set(class_names)) != len(class_names):
        raise DataError(f"{ann_dir / 'classlist.npy'} names a class twice ({', '.join(duplicates(class_names))}); "
                        "each class must be listed once")
    class_index = {name: i for i, name in enumerate(class_names)}
    subsets = np.array([text(s) for s in arrays["subset"]])
    rows = np.flatnonzero(subsets == subset)
    if len(rows) == 0:
        raise DataError(
            f"{ann_dir / 'subset.npy'} has no video of subset {subset!r}; it has {sorted(set(subsets.tolist()))}"
        )
    names = [text(arrays["videoname"][row]) for row in rows]
    widths = ExpectedWidth([w for w in map(width_of, (features[r] for r in rows)) if w is not None], feature_dim)

    def read_video(i: int) -> tuple[VideoRecord, int]:
        row, name = rows[i], names[i]
        feats = check_features(name, features[row], widths)
        labels_all = [text(x) for x in items(arrays["labels_all"][row])]
        label_idx = class_indices(labels_all, class_index, what="video label (labels_all.npy)")
        seg_names = [text(x) for x in items(arrays["labels"][row])]
        seg_idx = class_indices(seg_names, class_index, what="segment label (labels.npy)")
        raw_segments = list(items(arrays["segments"][row]))
        if len(raw_segments) != len(seg_idx):
            raise VideoProblem(f"{len(raw_segments)} segments (segments.npy) but {len(seg_idx)} labels (labels.npy)")
        duration = arrays["duration"][row]
        segments, keep, n_changed = check_segments(
            raw_segments, float(duration), snippets_per_second=snippets_per_second, out_of_range=out_of_range
        )
        record = build_record(name, feats, label_idx, len(class_names), duration, segments, seg_idx[keep])
        return record, n_changed

    videos, skipped = validate_videos(
        names, read_video, on_error=on_error, where=f"{feat_path} / {ann_dir}", label=f"{dataset_name}/{subset}",
        out_of_range=out_of_range,
    )
    ambiguous = {}
    if (ann_dir / AMBIGUOUS_FILE).is_file():
        keep_names = {v.name for v in videos}
        ambiguous = {k: v for k, v in read_ambiguous(ann_dir / AMBIGUOUS_FILE).items() if k in keep_names}
    return VideoDataset(
        name=dataset_name,
        subset=subset,
        class_names=class_names,
        videos=tuple(videos),
        snippets_per_second=snippets_per_second,
        ambiguous=ambiguous,
        skipped=tuple(skipped),
    )


def _object_array(entries: Iterable[object]) -> np.ndarray:
    entries = list(entries)
    out = np.empty(len(entries), dtype=object)
    for i, item in enumerate(entries):  # element-wise: np.array would merge equal-length lists into a 2-D array
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
    # every file atomically (a temporary sibling, then a rename): a full disk leaves no truncated file
    save_npy(features_path(out, dataset_name), _object_array(v.features for v, _ in rows), allow_pickle=True)
    save_npy(ann / "videoname.npy", np.array([v.name.encode("utf-8") for v, _ in rows]))
    save_npy(ann / "subset.npy", np.array([s.encode("utf-8") for _, s in rows]))
    save_npy(ann / "classlist.npy", np.array([c.encode("utf-8") for c in names]))
    save_npy(ann / "duration.npy", np.array([[v.duration] for v, _ in rows], dtype=np.float64).reshape(-1, 1))
    save_npy(ann / "segments.npy", _object_array(v.segments.tolist() for v, _ in rows), allow_pickle=True)
    save_npy(
        ann / "labels.npy",
        _object_array([names[c] for c in v.segment_labels.tolist()] for v, _ in rows),
        allow_pickle=True,
    )
    save_npy(
        ann / "labels_all.npy",
        _object_array([names[c] for c in np.flatnonzero(v.labels > 0).tolist()] for v, _ in rows),
        allow_pickle=True,
    )
    with atomic_file(ann / AMBIGUOUS_FILE, "w") as handle:
        for ds in (train, test):
            for name, segs in ds.ambiguous.items():
                for s, e in segs.tolist():
                    handle.write(f"{name}  {s!r} {e!r}\n")
    return out
