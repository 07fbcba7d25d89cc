"""Per-video feature folders with an ActivityNet-format ground-truth JSON (the layout of WUM, BaS-Net, ...).

::

    <root>/features/<split>/rgb/<video>.npy    (T, 1024)
    <root>/features/<split>/flow/<video>.npy   (T, 1024)   -> concatenated to (T, 2048), rgb first
    gt.json: {"database": {video: {"subset": ..., "annotations": [{"segment": [s, e], "label": ...}], ...}}}

Segment bounds may be numbers or numeric strings (THUMOS14 ``gt.json`` stores strings). A video's duration is its
``duration`` key where present, else T / snippets_per_second. Its video-level labels are the classes of its segments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DataError
from ..formats.activitynet import read_activitynet_json
from ..formats.npy import load_npy
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
from .records import I3D_SNIPPETS_PER_SECOND, DataWarning, VideoDataset, VideoRecord


def _read_video(base: Path, name: str, modalities: Sequence[str]) -> np.ndarray:
    """One video's modalities, concatenated along the feature axis: (T, sum of D_m), or ``VideoProblem``."""
    parts = []
    for modality in modalities:
        path = base / modality / f"{name}.npy"
        if not path.is_file():
            raise VideoProblem(f"has no features: {path} does not exist")
        try:
            parts.append(load_npy(path, "feature file"))  # never unpickled: a (T, D) array needs no objects
        except DataError as exc:  # any unreadable file is a bad video
            raise VideoProblem(str(exc)) from exc
        if parts[-1].ndim != 2:
            raise VideoProblem(f"{path} must hold a (T, D) array, got shape {parts[-1].shape}")
    lengths = {m: p.shape[0] for m, p in zip(modalities, parts)}
    if len(set(lengths.values())) > 1:
        raise VideoProblem(f"modalities have different snippet counts {lengths}")
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def load_folders(
    root: str | os.PathLike,
    ground_truth_json: str | os.PathLike | Mapping[str, Any],
    subset: str,
    *,
    split: str | None = None,
    modalities: Sequence[str] = ("rgb", "flow"),
    class_names: Sequence[str] | None = None,
    snippets_per_second: float = I3D_SNIPPETS_PER_SECOND,
    on_error: str = "raise",
    out_of_range: str = "error",
    feature_dim: int | None = None,
) -> VideoDataset:
    """Read the videos of one ground-truth subset from per-video feature files, validating every video.

    Args:
        root: folder holding ``features/<split>/<modality>/<video>.npy``.
        ground_truth_json: ActivityNet-format JSON path (or the loaded object).
        subset: the ground truth's subset to load (THUMOS14 ``gt.json``: ``"train"`` or ``"test"``).
        split: the features sub-folder; default ``subset``.
        modalities: sub-folders whose (T, D_m) arrays are concatenated along the feature axis, in this order.
        class_names: the class list (index order); default all labels of the whole database, sorted, so that every
            subset shares the same indices.
        snippets_per_second: seconds <-> snippets factor; 25/16 for I3D features (16 frames at 25 fps).
        on_error: ``"raise"`` a ``DataError`` naming the file and video, or ``"skip"`` bad videos (missing or empty
            feature files, modalities of different lengths, NaN/Inf, differing widths, unknown labels, segments
            outside the video) with one warning; ``dataset.skipped`` lists them.
        out_of_range: segments ending more than one snippet after the video: ``"error"``, ``"keep"`` or ``"clip"``.
        feature_dim: the (concatenated) feature width D every video must have; default the most common width among
            the subset's videos.

    Returns:
        The subset's videos sorted by name.
    """
    check_loader_options(on_error, out_of_range, snippets_per_second)
    if not modalities:
        raise DataError("load_folders needs at least one modality folder (e.g. ('rgb', 'flow'))")
    data, source = read_activitynet_json(ground_truth_json, "ground-truth", "database", warning=DataWarning)
    database = data["database"]
    if isinstance(ground_truth_json, Mapping):
        source = "ground truth"
    base = Path(root) / "features" / (subset if split is None else split)
    for modality in modalities:
        if not (base / modality).is_dir():
            raise DataError(
                f"missing feature folder {base / modality}; expected features/<split>/<modality>/<video>.npy under "
                f"{root} (pass split= if the folder is not named after the subset {subset!r})"
            )
    entries = {
        str(name): entry
        for name, entry in database.items()
        if isinstance(entry, Mapping) and entry.get("subset") == subset
    }
    if not entries:
        found = sorted({str(e.get("subset")) for e in database.values() if isinstance(e, Mapping)})
        raise DataError(f"{source}: no video of subset {subset!r}; the subsets are {found}")
    if class_names is None:
        class_names = sorted(
            {
                str(a.get("label"))
                for e in database.values()
                if isinstance(e, Mapping)
                for a in e.get("annotations", []) or []
                if isinstance(a, Mapping)
            }
        )
    class_names = tuple(class_names)
    class_index = {name: i for i, name in enumerate(class_names)}

    features: dict[str, np.ndarray | VideoProblem] = {}
    for name in sorted(entries):  # read every video first: the expected width is the most common one
        try:
            features[name] = _read_video(base, name, modalities)
        except VideoProblem as problem:
            features[name] = problem
    widths = ExpectedWidth([w for w in map(width_of, features.values()) if w is not None], feature_dim)

    names = sorted(entries)

    def read_video(i: int) -> tuple[VideoRecord, int]:
        name = names[i]
        entry = entries[name]
        if isinstance(features[name], VideoProblem):
            raise features[name]
        feats = check_features(name, features[name], widths)
        annotations = [a for a in entry.get("annotations", []) or []]
        try:
            raw = [[float(a["segment"][0]), float(a["segment"][1])] for a in annotations]
            seg_names = [str(a["label"]) for a in annotations]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise VideoProblem(f"an annotation lacks a numeric 'segment' [start, end] or a 'label' ({exc})")
        seg_idx = class_indices(seg_names, class_index, what="segment label")
        duration = len(feats) / snippets_per_second
        if entry.get("duration") is not None:
            duration = float(entry["duration"])
        segments, keep, n_changed = check_segments(
            raw, duration, snippets_per_second=snippets_per_second, out_of_range=out_of_range
        )
        record = build_record(name, feats, np.unique(seg_idx), len(class_names), duration, segments, seg_idx[keep])
        return record, n_changed

    videos, skipped = validate_videos(
        names, read_video, on_error=on_error, where=f"{source} / {base}", label=f"{source}/{subset}",
        out_of_range=out_of_range,
    )
    return VideoDataset(
        name=Path(source).stem if source != "ground truth" else "folders",
        subset=subset,
        class_names=class_names,
        videos=tuple(videos),
        snippets_per_second=snippets_per_second,
        skipped=tuple(skipped),
    )


def write_folders(
    train: VideoDataset,
    test: VideoDataset,
    out_dir: str | os.PathLike,
    *,
    modalities: Sequence[str] = ("rgb", "flow"),
) -> Path:
    """Write two sets in the per-video folder layout that ``load_folders`` reads back (subsets "train", "test").

    Features are split along D into ``len(modalities)`` equal parts (rgb first, as ``load_folders`` concatenates
    them) and saved as ``features/<subset>/<modality>/<video>.npy``; ``gt.json`` holds both subsets' segments
    (seconds), labels and durations.

    Returns:
        The folder written (``out_dir``); ``load_folders(out_dir, out_dir / "gt.json", "test")`` reads the test set.
    """
    if train.class_names != test.class_names:
        raise DataError("write_folders: train and test must have the same class list")
    width = train.feature_dim or test.feature_dim
    if width % len(modalities):
        raise DataError(f"write_folders: feature width {width} does not split into {len(modalities)} modalities")
    out = Path(out_dir)
    database: dict[str, Any] = {}
    for subset, ds in (("train", train), ("test", test)):
        for modality in modalities:
            try:
                (out / "features" / subset / modality).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataError(f"cannot create {out / 'features' / subset / modality}: {exc}") from exc
        for video in ds.videos:
            parts = np.split(np.asarray(video.features), len(modalities), axis=1)
            for modality, part in zip(modalities, parts):
                save_npy(out / "features" / subset / modality / f"{video.name}.npy", part)
            database[video.name] = {
                "subset": subset,
                "duration": float(video.duration),
                "annotations": [{"segment": [float(s), float(e)], "label": ds.class_names[int(c)]}
                                for (s, e), c in zip(video.segments.tolist(), video.segment_labels.tolist())],
            }
    with atomic_file(out / "gt.json", "w") as handle:
        handle.write(json.dumps({"version": f"rskp {train.name}", "database": database}, indent=1))
    return out
