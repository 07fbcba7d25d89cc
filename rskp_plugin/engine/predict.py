"""Detections for new feature files with a trained checkpoint (``rskp predict``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from ..checkpoint import check_head_installed, load_checkpoint
from ..config import from_mapping
from ..data._npy import load_npy, npy_header
from ..errors import CheckpointError, DataError
from .build import build_model, resolve_device
from .config import ExperimentConfig


def load_trained_model(path: str | os.PathLike[str], device: str = "auto") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in a checkpoint (head + RSKP or head alone) in eval mode.

    Returns:
        The model on ``device`` and the checkpoint's ``meta`` (class names, feature width, snippets per second).
    """
    data = load_checkpoint(path)
    check_head_installed(data, path)
    target = resolve_device(device, setting="--device")
    config = from_mapping(ExperimentConfig, data["config"])
    meta = data["meta"]
    model = build_model(config, num_classes=len(meta["class_names"]), feature_dim=int(meta["feature_dim"]))
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} does not match the head it names ({str(exc).splitlines()[0]}); "
            "is the installed head plugin a different version?"
        ) from exc
    model.to(target).eval()
    return model, dict(meta)


def check_predictions_path(out: str | os.PathLike[str], *, checkpoint: str | os.PathLike[str],
                           features: Sequence[str | os.PathLike[str]]) -> Path:
    """Check ``--out`` before any work: a writable file path that is neither the checkpoint nor a feature input.

    Raises:
        OutputError: ``out`` is a folder, lies under a file, cannot be written, or is one of the inputs (a feature
            file, a ``.npy`` in a feature folder, or the checkpoint).
    """
    from .output import check_output_file

    path, model = Path(out), Path(checkpoint)
    model = model / "last.pt" if model.is_dir() else model  # a run folder means its last.pt
    check_output_file(path, inputs=[model, *map(Path, features)], what="--out")
    return path


def read_feature_files(paths: Sequence[str | os.PathLike[str]], *, feature_dim: int) -> list[tuple[str, np.ndarray]]:
    """Videos from ``.npy`` files: a (T, D) array is one video named after the file; a 1-D object array (W-TALC
    layout) holds one (T, D) array per video, named ``<file>_<index>``; a folder contributes every ``.npy`` in it.

    Only object arrays are unpickled (their format needs it: pass only files you trust); what a file holds is read
    from its ``.npy`` header first, so a pickle or random bytes named ``.npy`` are refused, never loaded.

    Raises:
        DataError: a file is missing, not a ``.npy`` file, truncated, holds strings or an array of the wrong shape
            or width, or NaN/Inf.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.npy")))
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"feature file {os.fspath(p)!r} does not exist; pass .npy files of (T, D) features")
    if not files:
        raise DataError(f"no .npy feature files found in {[os.fspath(p) for p in paths]}")
    videos: list[tuple[str, np.ndarray]] = []
    for f in files:
        dtype, _ = npy_header(f, "feature file")
        array = load_npy(f, "feature file", pickled=dtype.hasobject)  # an object array holds one array per video
        if dtype.hasobject:
            if array.ndim != 1:
                raise DataError(
                    f"{os.fspath(f)}: an object array of shape {array.shape}; pass a (T, D) array or a 1-D object "
                    "array of (T, D) arrays (W-TALC layout)"
                )
            items = [(f"{f.stem}_{i:04d}", a) for i, a in enumerate(array)]
        else:
            items = [(f.stem, array)]
        for name, x in items:
            x = _numeric(x, f"{os.fspath(f)}: video {name}")
            if x.ndim != 2 or x.shape[1] != feature_dim or x.shape[0] == 0:
                raise DataError(
                    f"{os.fspath(f)}: video {name} has features of shape {x.shape}; the checkpoint's head expects "
                    f"(T, {feature_dim}) with T >= 1"
                )
            if not np.isfinite(x).all():
                raise DataError(f"{os.fspath(f)}: video {name} holds NaN/Inf features")
            videos.append((name, x.astype(np.float32, copy=False)))
    names = [n for n, _ in videos]
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})[:5]
        raise DataError(f"duplicate video names among the feature files: {duplicates}; rename the files")
    return videos


def _numeric(x: Any, where: str) -> np.ndarray:
    """``x`` as a real-valued array, or a DataError: strings, None or nested objects are not features."""
    try:
        array = np.asarray(x)
    except (TypeError, ValueError):  # ragged nested lists
        array = np.empty(0, dtype=object)
    if array.dtype.kind not in "biuf":
        kind = "Python objects" if array.dtype.hasobject else f"{array.dtype} values"
        raise DataError(f"{where} holds {kind}, not numbers; pass (T, D) float features (e.g. I3D, np.float32)")
    return array


def predict_files(
    checkpoint: str | os.PathLike[str], paths: Sequence[str | os.PathLike[str]], *, device: str = "auto",
    batch_size: int = 16, progress: Any = None,
) -> dict[str, Any]:
    """ActivityNet-format detections (``{"version", "results", "external_data"}``) for new feature files."""
    from ..data import VideoDataset, VideoRecord, collate
    from .inference import predict_detections

    model, meta = load_trained_model(checkpoint, device)
    sps = float(meta["snippets_per_second"])
    classes = list(meta["class_names"])
    videos = [
        VideoRecord(
            name, x, np.zeros(len(classes), dtype=np.float32), len(x) / sps, np.zeros((0, 2)), np.zeros(0, np.int64)
        )
        for name, x in read_feature_files(paths, feature_dim=int(meta["feature_dim"]))
    ]
    dataset = VideoDataset("predict", "predict", classes, videos, snippets_per_second=sps)
    detections, _ = predict_detections(
        model, dataset, collate=collate, device=next(model.parameters()).device, batch_size=batch_size,
        progress=progress,
    )
    return detections
