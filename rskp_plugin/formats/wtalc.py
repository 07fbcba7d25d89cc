"""The W-TALC ``.npy`` files (sujoyp/wtalc-pytorch and its descendants: 3C-Net, CO2-Net, RSKP, ...).

A dataset ``<Name>`` (``Thumos14reduced``, ``ActivityNet1.2``, ``ActivityNet1.3``) is stored as::

    <root>/<Name>-I3D-JOINTFeatures.npy      object array, one (T, 2048) float array per video
    <root>/<Name>-Annotations/               index-aligned .npy arrays over the same videos:
        videoname.npy  subset.npy  classlist.npy  duration.npy (N, 1)
        segments.npy (lists of [start, end] s)  labels.npy (one class name per segment)
        labels_all.npy (video-level class names)  [Ambiguous_test.txt]

Only the feature file, ``segments.npy``, ``labels.npy`` and ``labels_all.npy`` are unpickled: their entries are
ragged per-video lists, which numpy can only store as object arrays (pickles), read by ``npy.SafeUnpickler``,
which rebuilds arrays and plain values only and refuses anything else before it runs. The other files must be plain
arrays; a pickle there is refused with a ``DataError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from .npy import load_npy

ANNOTATION_FILES = ("videoname", "subset", "classlist", "duration", "segments", "labels", "labels_all")
#: Annotation files whose format needs object arrays (ragged per-video lists), which numpy stores as pickles. These
#: and the feature file (one (T, D) array per video) are the only W-TALC files unpickled; the others must be plain
#: arrays (strings as bytes, durations as floats), as in the original files.
PICKLED_ANNOTATIONS = ("segments", "labels", "labels_all")
#: The key of the feature file in what ``read_wtalc_files`` returns.
FEATURES = "features"


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


def text(x: object) -> str:
    """A W-TALC string entry (bytes in the original Python 2 files) as ``str``."""
    return x.decode("utf-8") if isinstance(x, (bytes, np.bytes_)) else str(x)


def items(x: object) -> list:
    """A W-TALC per-video entry (list, tuple, array or None) as a list."""
    if x is None:
        return []
    if isinstance(x, (str, bytes, np.bytes_)):
        return [x]
    return list(x)


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def read_wtalc_files(
    annotation_dir: str | os.PathLike,
    stems: Sequence[str] = ANNOTATION_FILES,
    *,
    features: str | os.PathLike | None = None,
    hint: str = "Pass the folder of the W-TALC annotation .npy files.",
) -> dict[str, np.ndarray]:
    """Read W-TALC annotation files (``<annotation_dir>/<stem>.npy``) and, if given, the feature file.

    Every file is checked to exist before any is read (annotations first, then the features). A file is unpickled
    only if its format needs object arrays (``PICKLED_ANNOTATIONS`` and the feature file); the message for an
    object array elsewhere names the files of this read that are unpickled.

    Args:
        annotation_dir: the folder of the annotation files.
        stems: which annotation files, e.g. ``("videoname", "subset")``.
        features: the path of ``<Name>-I3D-JOINTFeatures.npy``, returned under ``FEATURES``; None reads none.
        hint: what to do when a file is missing, appended to the message.

    Returns:
        stem -> the file's array (and ``FEATURES`` -> the object array of per-video features).

    Raises:
        DataError: a missing file, a file that is not a ``.npy`` file, an object array where the format has none,
            a truncated or corrupt file.
    """
    folder = Path(annotation_dir)
    paths = {stem: folder / f"{stem}.npy" for stem in stems}
    for stem, path in paths.items():
        if not path.is_file():
            raise DataError(f"missing annotation file {stem}.npy: {os.fspath(path)} does not exist. {hint}")
    if features is not None:
        if not os.path.isfile(features):
            raise DataError(f"missing feature file: {os.fspath(features)} does not exist. {hint}")
    unpickled = ["the feature file"] if features is not None else []
    unpickled += [f"{stem}.npy" for stem in stems if stem in PICKLED_ANNOTATIONS]
    described = _join(unpickled) if unpickled else ""
    out = {
        stem: load_npy(path, "W-TALC file", pickled=stem in PICKLED_ANNOTATIONS, pickled_files=described)
        for stem, path in paths.items()
    }
    if features is not None:
        out[FEATURES] = load_npy(features, "W-TALC file", pickled=True, pickled_files=described)
    return out
