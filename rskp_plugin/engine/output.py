"""Where runs and predictions are written: checked before any work, never over another run or an input file.

A run folder holds ``last.pt``, ``best.pt``, ``results.json``, ``metrics.jsonl`` and ``config.yaml`` (``RUN_FILES``),
and may hold
``tensorboard/`` and ``plots/`` (``RUN_DIRS``, written by ``train.tensorboard`` and ``rskp plot``). A new run refuses
a folder that already holds one of them unless told to overwrite (then the old ones are removed first, so nothing of
the old run is left beside the new one: no metrics line, event file or figure); a resumed run continues in the
folder of the checkpoint it was given. The atomic writers leave a temporary file only when the process is killed
mid-write; those are removed when a run starts.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from ..errors import OutputError

RUN_FILES = ("last.pt", "best.pt", "results.json", "metrics.jsonl", "config.yaml")
RUN_DIRS = ("tensorboard", "plots")
# The temporary names of checkpoint.save_checkpoint (mkstemp prefix ".<name>.", suffix ".tmp"), write_results,
# record.write_metrics and RunRecord.write_config.
TEMP_PATTERNS = (".last.pt.*.tmp", ".best.pt.*.tmp", "results.json.tmp", "metrics.jsonl.tmp", "config.yaml.tmp")


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def ensure_writable_dir(folder: Path, *, what: str) -> None:
    """Check that ``folder`` can be created (if missing) and written, without creating it.

    A file is written and removed in ``folder`` or, when it does not exist yet, in its nearest existing parent:
    nothing is left behind when the run stops on a later error.

    Args:
        folder: the folder.
        what: how the user named it, for the message ("output folder (--output-dir / train.output_dir)").

    Raises:
        OutputError: the path or one of its parents is a file, or the folder cannot be created or written.
    """
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under {os.fspath(existing)!r}, which is a file"
        raise OutputError(f"{what} {os.fspath(folder)!r} {where}; pass a folder path")
    try:
        with tempfile.TemporaryFile(dir=existing):  # a folder's permissions or a read-only mount show only here
            pass
    except OSError as exc:
        raise OutputError(
            f"{what} {os.fspath(folder)!r} cannot be written ({_reason(exc)}); pass a writable folder"
        ) from exc


def prepare_run_dir(folder: Path, *, overwrite: bool, continuing: Path | None) -> None:
    """Check a run folder before training: writable, and holding no other run unless ``overwrite``.

    Args:
        folder: the run folder (``train.output_dir``).
        overwrite: remove the files of a run already in ``folder`` instead of refusing.
        continuing: the checkpoint a resumed run continues; its own folder holds the run being continued.

    Raises:
        OutputError: ``folder`` cannot be written, or holds another run and ``overwrite`` is False.
    """
    what = "output folder (--output-dir / train.output_dir)"
    ensure_writable_dir(folder, what=what)
    same_run = continuing is not None and _same(Path(continuing).parent, folder)
    existing = [name for name in RUN_FILES if (folder / name).exists()]
    existing += [f"{name}/" for name in RUN_DIRS if (folder / name).is_dir()]
    if existing and not same_run and not overwrite:
        resume = f"; or --resume {os.fspath(folder / 'last.pt')} to continue it" if "last.pt" in existing else ""
        raise OutputError(
            f"{what} {os.fspath(folder)!r} already holds a run ({', '.join(existing)}); pass --overwrite to replace "
            f"it or --output-dir DIR for a new folder{resume}"
        )
    if overwrite and not same_run:
        for name in existing:
            if name.endswith("/"):
                shutil.rmtree(folder / name)
            else:
                (folder / name).unlink()
    for pattern in TEMP_PATTERNS:  # left by a process killed while writing; never read
        for stray in folder.glob(pattern):
            stray.unlink(missing_ok=True)


def check_output_file(path: Path, *, inputs: Sequence[Path], what: str = "--out") -> None:
    """Check that ``path`` can be written as a file and is none of ``inputs`` (files, or folders read whole).

    Raises:
        OutputError: ``path`` is a folder, lies under a file, cannot be written, or is one of the inputs.
    """
    if path.is_dir():
        raise OutputError(
            f"{what} {os.fspath(path)!r} is a folder; pass a file path such as {os.fspath(path / 'preds.json')!r}"
        )
    for given in inputs:
        given = Path(given)
        clash = _same(given, path) if not given.is_dir() else (_same(given, path.parent) and path.suffix == ".npy")
        if clash:
            raise OutputError(
                f"{what} {os.fspath(path)!r} is an input ({os.fspath(given)}); writing it would destroy the input. "
                "Pass another file"
            )
    existing = next(p for p in path.absolute().parents if p.exists())
    if not existing.is_dir():
        raise OutputError(f"{what} {os.fspath(path)!r} lies under {os.fspath(existing)!r}, which is a file; pass a "
                          "path in a folder")
    ensure_writable_dir(path.parent, what=f"the folder of {what}")


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare the resolved paths
        return Path(a).resolve() == Path(b).resolve()
