"""Training checkpoints: written atomically, validated on load, with everything ``--resume`` needs.

A checkpoint is one ``torch.save`` file holding a plain dict::

    format          "rskp-checkpoint"           (anything else is a foreign file)
    format_version  4
    epoch           epochs completed
    config          the resolved ExperimentConfig as plain data (attrs.asdict)
    model           model.state_dict(): head, summariser and the memory bank (its buffers, incl. ``ready``)
    optimizer       optimizer.state_dict()
    rng             torch / CUDA / numpy / python generator states
    trainer         history of evaluations, best selection, epoch and evaluation seconds, and (data-parallel
                    runs) ``rank_rng``: every rank's generator states
    meta            class names, feature size, snippets per second, library versions, and ``head``: the head's
                    name with the distribution and version that provided it (named when it is not installed)

Only tensors and plain Python values are stored, so ``torch.load(weights_only=True)`` reads it: loading a
checkpoint never runs code from the file.

Migrations: ``load_checkpoint`` returns every checkpoint as today's code reads it. ``migrations.MIGRATIONS`` maps a
version to the upgrades a file written at that version (or an earlier one) needs; each is a function of the plain
payload and leaves an already-current one as it is. A change that older rskp versions could not read bumps
``FORMAT_VERSION`` and keys its migration by the previous version.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, OutputError, UnknownHeadError
from .formats.npy import why_not_a_file
from .migrations import MIGRATIONS
from .plugins import head_specs

FORMAT = "rskp-checkpoint"
FORMAT_VERSION = 4
REQUIRED_KEYS = ("epoch", "config", "model", "optimizer", "rng", "trainer", "meta")



def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format tag) to ``path`` atomically: a temp file in the same folder, then rename.

    A run killed while writing leaves the previous checkpoint intact (and at worst a stray ``.tmp`` file).

    Args:
        path: destination file; its folder is created if needed.
        payload: the checkpoint fields (``REQUIRED_KEYS``); tensors and plain Python values only.

    Returns:
        The path written.
    """
    path = Path(path)
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"cannot save checkpoint {path}: missing fields {', '.join(missing)}")
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write checkpoint {os.fspath(path)!r} ({exc.strerror or exc}); free space or "
                          "pass a writable --output-dir") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        # torch's zip writer reports a full disk as a RuntimeError ("[enforce fail at inline_container.cc] ...
        # unexpected pos", "file write failed")
        torch_write = isinstance(exc, RuntimeError) and any(
            text in str(exc) for text in ("inline_container", "unexpected pos", "write failed"))
        if isinstance(exc, OSError) or torch_write:  # disk full, file system gone read-only
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (
                "the write failed; the disk is probably full" if torch_write else str(exc))
            kept = "the previous one is intact" if path.exists() else "no checkpoint was left there"
            raise OutputError(f"cannot write checkpoint {os.fspath(path)!r} ({reason}); {kept}. Free space or pass "
                              "a writable --output-dir") from exc
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint written by ``save_checkpoint``.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, not an rskp checkpoint, from a newer format
            version, or lacks a required field. The message names the file and what to do.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {os.fspath(path)!r} {why_not_a_file(path)}; pass a .pt file written by "
                              "'rskp train'")
    try:
        with open(path, "rb"):  # unreadable (permissions, an I/O error): said as such, not as a corrupt file
            pass
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {os.fspath(path)!r}: "
                              f"{'permission denied' if isinstance(exc, PermissionError) else exc.strerror or exc}; "
                              "check its permissions (ls -l, chmod) or pass another checkpoint") from exc
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours (or is cut short)
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic == b"PK\x03\x04":
            raise CheckpointError(
                f"Checkpoint {os.fspath(path)!r} is truncated or corrupt (an incomplete archive); resume from an "
                "older checkpoint or retrain"
            )
        raise CheckpointError(
            f"{os.fspath(path)!r} is not an rskp checkpoint (not an archive written by torch.save; it was not read). "
            "Pass a checkpoint written by 'rskp train' (run folder/last.pt or best.pt)"
        )
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise CheckpointError(
                f"Checkpoint {os.fspath(path)!r} is corrupt ({_first_line(exc)}); resume from an older checkpoint"
            ) from exc
        raise CheckpointError(
            f"{os.fspath(path)!r} is not an rskp checkpoint: it stores Python objects other than tensors and plain "
            "values (it was written by another program, and loading it could run code). Pass a checkpoint "
            "written by 'rskp train'"
        ) from exc
    except (EOFError, OSError, RuntimeError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(
            f"Checkpoint {os.fspath(path)!r} is truncated or corrupt ({type(exc).__name__}: {_first_line(exc)}); "
            "resume from an older checkpoint or retrain"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{os.fspath(path)!r} is not an rskp checkpoint (no '{FORMAT}' tag); it was written by another program. "
            "Pass a checkpoint written by 'rskp train' (run folder/last.pt or best.pt)"
        )
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"Checkpoint {os.fspath(path)!r} has format version {version!r}; this rskp reads up to "
            f"{FORMAT_VERSION}. Upgrade rskp-plugin"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"Checkpoint {os.fspath(path)!r} lacks the fields {', '.join(missing)}; it is damaged")
    return migrate(data)


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a loaded, validated payload) upgraded by every migration its format version needs."""
    version = int(data["format_version"])
    for key in sorted(MIGRATIONS):
        if key >= version:
            for upgrade in MIGRATIONS[key]:
                data = upgrade(data)
    return data


def training_payload(*, epoch: int, config: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     trainer: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The fields of a training checkpoint (the module docstring lists them), with this process's generators."""
    return {
        "epoch": epoch, "config": config, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "rng": capture_rng_state(), "trainer": trainer, "meta": meta,
    }


def state_mismatch(model: torch.nn.Module, saved: dict[str, Any], limit: int = 4) -> str:
    """What keeps ``saved`` (a state dict) from fitting ``model``: the tensors of another shape (name, the file's
    shape, the model's), the ones the file lacks and the ones the model lacks, each list cut to ``limit``."""
    own = model.state_dict()
    shapes = [f"{k} {tuple(saved[k].shape)} in the file, {tuple(v.shape)} in the model" for k, v in own.items()
              if k in saved and hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(v.shape)]
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    parts = []
    for what, names in (("other shapes", shapes), ("missing from the file", missing),
                        ("not in the model", unexpected)):
        if names:
            more = f" and {len(names) - limit} more" if len(names) > limit else ""
            parts.append(f"{what}: {'; '.join(names[:limit])}{more}")
    return ". ".join(parts) or "the tensors fit; another field does not"


def restore_training(data: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                     rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Load a loaded checkpoint's model and optimizer states and the generator states this process resumes with
    (its own where the run had as many processes, else the saved process's); returns the ``trainer`` entry.

    Raises:
        CheckpointError: the states do not fit ``model`` (another head or config).
    """
    try:
        model.load_state_dict(data["model"])
        optimizer.load_state_dict(data["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint does not fit this model ({state_mismatch(model, data['model'])}); was it written for "
            "another head, head option or config?"
        ) from exc
    trainer = data["trainer"]
    rank_rng = trainer.get("rank_rng")
    if rank_rng is not None and len(rank_rng) == world_size:  # written by a run with as many processes
        restore_rng_state(rank_rng[rank])
    else:
        restore_rng_state(data["rng"])
    return trainer


def head_record(name: str) -> dict[str, str]:
    """``meta["head"]``: the head's name and the distribution and version that provide it ("" if registered in code)."""
    spec = head_specs().get(name)
    dist, _, version = (spec.distribution if spec is not None else "").partition(" ")
    return {"name": name, "distribution": dist, "version": version}


def check_head_installed(data: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Raise ``UnknownHeadError`` naming the distribution to install when the checkpoint's head is not installed."""
    name = str(data["config"]["head"]["name"])
    installed = head_specs()
    if name in installed:
        return
    record = data["meta"].get("head") or {}
    dist, version = record.get("distribution"), record.get("version")
    if dist:
        hint = f"it came from the distribution {dist} {version}: pip install '{dist}=={version}'"
    elif record:
        hint = "it was registered in code, not by an installed distribution: register it before loading"
    else:
        hint = "the checkpoint predates the record of head distributions: install the plugin that provides it"
    raise UnknownHeadError(
        f'Checkpoint {os.fspath(path)!r} was trained with the head "{name}", which is not installed; {hint}. '
        f"Installed heads: {', '.join(sorted(installed)) or 'none'}"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def capture_rng_state() -> dict[str, Any]:
    """The global generators of torch (CPU and CUDA), numpy and python as checkpoint-safe values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
