"""Detections for new feature files with a trained checkpoint (``rskp predict``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from ..checkpoint import check_head_installed, load_checkpoint, state_mismatch
from ..config_io import from_mapping
from ..errors import CheckpointError, DataError
from ..formats.npy import load_npy, npy_header, why_not_a_file
from .build import build_model, resolve_device
from .config import ExperimentConfig
from .ema import load_average


def load_trained_model(path: str | os.PathLike[str], device: str = "auto") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in a checkpoint (head + RSKP or head alone) in eval mode.

    Returns:
        The model on ``device`` and the checkpoint's ``meta`` (class names, feature width, snippets per second),
        plus the run's ``eval_batch_size``.
    """
    data = load_checkpoint(path)
    check_head_installed(data, path)
    target = resolve_device(device, setting="--device")
    config = from_mapping(ExperimentConfig, data["config"])
    meta = {**data["meta"], "eval_batch_size": config.train.eval_batch_size}
    model = build_model(config, num_classes=len(meta["class_names"]), feature_dim=int(meta["feature_dim"]))
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} does not match the head it names ({state_mismatch(model, data['model'])});"
            " is the installed head plugin a different version?"
        ) from exc
    load_average(model, data)  # train.ema: the averaged weights, which the run evaluated
    model.to(target).eval()
    return model, dict(meta)


def check_predictions_path(out: str | os.PathLike[str], *, checkpoint: str | os.PathLike[str],
                           features: Sequence[str | os.PathLike[str]]) -> Path:
    """Check ``--out`` before any work: a writable file path that is neither the checkpoint nor a feature input.

    Raises:
        OutputError: ``out`` is a folder, lies under a file, cannot be written, or is one of the inputs (a feature
            file, a ``.npy`` in a feature folder, or the checkpoint).
    """
    from ..errors import OutputError
    from .output import RUN_FILES, check_output_file

    path, model = Path(out), Path(checkpoint)
    model = model / "last.pt" if model.is_dir() else model  # a run folder means its last.pt
    check_output_file(path, inputs=[model, *map(Path, features)], what="--out")
    if path.suffix == ".pt" or path.name in RUN_FILES:
        held = [name for name in RUN_FILES if (path.parent / name).is_file()]
        if held or path.suffix == ".pt":
            raise OutputError(
                f"--out {os.fspath(path)!r} is a checkpoint or run file name{' in a run folder' if held else ''}; "
                "writing detections there would destroy the run (or its resume checkpoint). Pass a .json path "
                "outside the run's files, e.g. preds.json"
            )
    if path.is_file() and _holds_data(path):
        raise OutputError(
            f"--out {os.fspath(path)!r} holds data (a .npy array or a checkpoint), perhaps a file this command reads "
            "(a W-TALC videoname.npy or subset.npy); pass a new .json path"
        )
    return path


def _holds_data(path: Path) -> bool:
    """Whether ``path`` starts like a ``.npy`` file or a ``torch.save`` archive (never a predictions file)."""
    from ..formats.npy import NPY_MAGIC

    try:
        with open(path, "rb") as handle:
            head = handle.read(len(NPY_MAGIC))
    except OSError:
        return False
    return head == NPY_MAGIC or head[:4] == b"PK\x03\x04"


def read_feature_files(
    paths: Sequence[str | os.PathLike[str]], *, feature_dim: int, subset: str | None = None
) -> list[tuple[str, np.ndarray]]:
    """Videos from ``.npy`` files, named as the datasets name them:

    * a (T, D) array is one video named after the file (``video_test_0000004.npy`` -> ``video_test_0000004``);
    * a 1-D object array (W-TALC layout, one (T, D) array per video) takes its names from the dataset's
      ``videoname.npy`` when the annotations lie beside it (``<Name>-Annotations/`` or the same folder, as
      ``load_wtalc`` finds them), else ``<file>_<index>``; ``subset`` keeps only the videos of that subset
      (``subset.npy``; THUMOS14: "test");
    * a folder contributes every ``.npy`` in it, or, for the per-video folder layout
      (``features/<split>/rgb/<video>.npy`` and ``flow/``), every video with its modalities concatenated, rgb first,
      as ``load_folders`` does.

    Only object arrays are unpickled (their format needs it), by ``formats.npy.SafeUnpickler``, which rebuilds
    arrays and plain values only and refuses anything else before it runs; what a file holds is read
    from its ``.npy`` header first, so a pickle or random bytes named ``.npy`` are refused, never loaded.

    Raises:
        DataError: a file is missing, not a ``.npy`` file, truncated, holds strings or an array of the wrong shape
            or width, or NaN/Inf; ``subset`` is given for a file without W-TALC annotations beside it.
    """
    files: list[Path] = []
    videos: list[tuple[str, np.ndarray]] = []
    for p in map(Path, paths):
        if p.is_dir() and not any(p.glob("*.npy")) and all((p / m).is_dir() for m in FOLDER_MODALITIES):
            videos.extend(_read_modalities(p, feature_dim))
        elif p.is_dir():
            files.extend(sorted(p.glob("*.npy")))
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"feature file {os.fspath(p)!r} {why_not_a_file(p)}; pass .npy files of (T, D) features")
    if not files and not videos:
        raise DataError(f"no .npy feature files found in {[os.fspath(p) for p in paths]}")
    for f in files:
        dtype, _ = npy_header(f, "feature file")
        array = load_npy(f, "feature file", pickled=dtype.hasobject)  # an object array holds one array per video
        if dtype.hasobject:
            if array.ndim != 1:
                raise DataError(
                    f"{os.fspath(f)}: an object array of shape {array.shape}; pass a (T, D) array or a 1-D object "
                    "array of (T, D) arrays (W-TALC layout)"
                )
            items = [(name, a) for name, a in zip(_wtalc_names(f, len(array), subset), array) if name is not None]
        elif subset is not None:
            raise DataError(f"--subset {subset} applies to W-TALC feature files; {os.fspath(f)} holds one video")
        else:
            items = [(f.stem, array)]
        for name, x in items:
            x = _numeric(x, f"{os.fspath(f)}: video {name}")
            _check(x, name, f, feature_dim)
            videos.append((name, x.astype(np.float32, copy=False)))
    names = [n for n, _ in videos]
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})[:5]
        raise DataError(f"duplicate video names among the feature files: {duplicates}; rename the files")
    return videos


#: Modality sub-folders of the per-video folder layout, concatenated in this order (``load_folders``' default).
FOLDER_MODALITIES = ("rgb", "flow")


def _check(x: np.ndarray, name: str, where: Path, feature_dim: int) -> None:
    if x.ndim != 2 or x.shape[1] != feature_dim or x.shape[0] == 0:
        raise DataError(
            f"{os.fspath(where)}: video {name} has features of shape {x.shape}; the checkpoint's head expects "
            f"(T, {feature_dim}) with T >= 1"
        )
    if not np.isfinite(x).all():
        raise DataError(f"{os.fspath(where)}: video {name} holds NaN/Inf features")


def _read_modalities(folder: Path, feature_dim: int) -> list[tuple[str, np.ndarray]]:
    """``folder/rgb/<video>.npy`` + ``folder/flow/<video>.npy`` -> (video, (T, D_rgb + D_flow)), sorted by name."""
    out = []
    for name in sorted(f.stem for f in (folder / FOLDER_MODALITIES[0]).glob("*.npy")):
        parts = []
        for modality in FOLDER_MODALITIES:
            path = folder / modality / f"{name}.npy"
            if not path.is_file():
                raise DataError(f"{path} does not exist; every video needs one file per modality "
                                f"({', '.join(FOLDER_MODALITIES)})")
            parts.append(_numeric(load_npy(path, "feature file"), f"{os.fspath(path)}: video {name}"))
        if len({p.shape[0] if p.ndim == 2 else -1 for p in parts}) != 1:
            raise DataError(f"{folder}: video {name} has modalities of different shapes {[p.shape for p in parts]}")
        x = np.concatenate(parts, axis=1)
        _check(x, name, folder, feature_dim)
        out.append((name, x.astype(np.float32, copy=False)))
    return out


def _wtalc_names(path: Path, count: int, subset: str | None) -> list[str | None]:
    """Names of the videos of a W-TALC features file, from the ``videoname.npy`` of the annotations beside it
    (None for videos outside ``subset``); ``<file>_<index>`` without annotations."""
    from ..formats.wtalc import annotations_path, read_wtalc_files, text

    suffix = "-I3D-JOINTFeatures"
    ann = annotations_path(path.parent, path.stem[: -len(suffix)]) if path.stem.endswith(suffix) else path.parent
    names_file, subsets_file = ann / "videoname.npy", ann / "subset.npy"
    if not names_file.is_file():
        if subset is not None:
            raise DataError(f"--subset {subset} needs the W-TALC annotations beside {os.fspath(path)} "
                            f"(videoname.npy and subset.npy in {ann}); none found")
        return [f"{path.stem}_{i:04d}" for i in range(count)]
    names = [text(x) for x in read_wtalc_files(ann, ("videoname",))["videoname"]]  # byte strings: no pickle
    if len(names) != count:
        raise DataError(f"{names_file} names {len(names)} videos but {os.fspath(path)} holds {count}; they must be "
                        "index-aligned (written together)")
    if subset is None:
        return names
    subsets = [text(x) for x in read_wtalc_files(ann, ("subset",))["subset"]] if subsets_file.is_file() else []
    if len(subsets) != count or subset not in subsets:
        raise DataError(f"{subsets_file}: no video of subset {subset!r} (subsets: {sorted(set(subsets))})")
    return [n if s == subset else None for n, s in zip(names, subsets)]


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
    batch_size: int | None = None, progress: Any = None, subset: str | None = None,
) -> dict[str, Any]:
    """ActivityNet-format detections (``{"version", "results", "external_data"}``) for feature files, videos named
    as ``read_feature_files`` names them (``subset``: only that subset of W-TALC files).

    ``batch_size`` None uses the checkpoint's ``train.eval_batch_size``: the same padded batches as the run's
    evaluations, so the detections of its test videos are the ones it scored."""
    from ..data import VideoDataset, VideoRecord, collate
    from .inference import predict_detections

    model, meta = load_trained_model(checkpoint, device)
    if batch_size is None:
        batch_size = int(meta.get("eval_batch_size", 16))
    sps = float(meta["snippets_per_second"])
    classes = list(meta["class_names"])
    videos = [
        VideoRecord(
            name, x, np.zeros(len(classes), dtype=np.float32), len(x) / sps, np.zeros((0, 2)), np.zeros(0, np.int64)
        )
        for name, x in read_feature_files(paths, feature_dim=int(meta["feature_dim"]), subset=subset)
    ]
    dataset = VideoDataset("predict", "predict", classes, videos, snippets_per_second=sps)
    detections, _ = predict_detections(
        model, dataset, collate=collate, device=next(model.parameters()).device, batch_size=batch_size,
        progress=progress,
    )
    return detections
