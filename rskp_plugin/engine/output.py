"""Where runs and predictions are written: checked before any work, never over another run or an input file.

A run folder holds ``last.pt``, ``best.pt``, ``results.json``, ``metrics.jsonl``, ``metrics.csv`` and ``config.yaml``
(``RUN_FILES``), and may hold ``tensorboard/`` and ``plots/`` (``RUN_DIRS``, written by the ``tensorboard`` logger
and ``rskp plot``). A new run refuses
a folder that already holds one of them unless told to overwrite (then the old ones are removed first, so nothing of
the old run is left beside the new one: no metrics line, event file or figure); a resumed run continues in the
folder of the checkpoint it was given. The atomic writers leave a temporary file only when the process is killed
mid-write; those are removed when a run starts.

A run holds a lock on its folder for its whole life (``RunLock``, taken before the folder is checked): a second
process training into the same folder is refused with the holder's PID instead of replacing the first run's files.
The lock is an exclusive ``flock`` on a small file outside the run folder (in the temporary folder, one per user,
named after the folder's resolved path), so the run folder holds only the run's files; the kernel drops the lock
when its process dies, so a crashed or killed run leaves no stale lock. It guards processes on one machine.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Sequence

from ..errors import OutputError, os_reason

RUN_FILES = ("last.pt", "best.pt", "results.json", "metrics.jsonl", "metrics.csv", "config.yaml")
RUN_DIRS = ("tensorboard", "plots")
# The temporary names of checkpoint.save_checkpoint (mkstemp prefix ".<name>.", suffix ".tmp"), write_results,
# the metric logs (engine.loggers) and RunRecord.write_config.
TEMP_PATTERNS = (".last.pt.*.tmp", ".best.pt.*.tmp", "results.json.tmp", "metrics.jsonl.tmp", "metrics.csv.tmp",
                 "config.yaml.tmp")


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
            f"{what} {os.fspath(folder)!r} cannot be written ({os_reason(exc)}); pass a writable folder"
        ) from exc


class RunLock:
    """This process's hold on a run folder (``lock_run_dir``); ``release`` gives it up (the last holder in the
    process closes the lock file, which drops the ``flock``)."""

    def __init__(self, key: str, handle: int | None) -> None:
        self.key, self.handle, self.released = key, handle, False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        entry = _HELD.get(self.key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _HELD[self.key]
            if entry[0] is not None:
                os.close(entry[0])


#: Locks this process holds: key -> [file descriptor, holders]. A process may hold its own folder more than once
#: (a run continued by a second ``Trainer`` in the same process, as tests and notebooks do).
_HELD: dict[str, list] = {}


def _lock_path(folder: Path) -> Path:
    key = os.fspath(folder.resolve())
    uid = os.getuid() if hasattr(os, "getuid") else 0
    base = Path(tempfile.gettempdir()) / f"rskp-run-locks-{uid}"
    base.mkdir(mode=0o700, exist_ok=True)
    return base / (hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".lock")


def lock_run_dir(folder: Path, *, what: str = "output folder (--output-dir / train.output_dir)") -> RunLock:
    """Take the lock of run folder ``folder`` for this process (see the module's docstring); held until
    ``RunLock.release`` or the process ends.

    Raises:
        OutputError: another process holds it; the message names its PID, host and start time.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): runs are not locked
        return RunLock(os.fspath(folder), None)
    try:
        path = _lock_path(folder)
    except OSError:  # no usable temporary folder: run unlocked rather than not at all
        return RunLock(os.fspath(folder), None)
    key = os.fspath(path)
    if key in _HELD:
        _HELD[key][1] += 1
        return RunLock(key, _HELD[key][0])
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return RunLock(os.fspath(folder), None)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").split("\n")
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return RunLock(os.fspath(folder), None)  # a file system without locks
        pid, host, since = (holder + ["?", "?", "?"])[:3]
        raise OutputError(
            f"{what} {os.fspath(folder)!r} is in use by another rskp process (PID {pid} on {host}, since {since}); "
            "wait for it to finish (or stop it), or pass another --output-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{socket.gethostname()}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                  f"{os.fspath(folder.resolve())}\n".encode("utf-8", "surrogateescape"), 0)
    _HELD[key] = [fd, 1]
    return RunLock(key, fd)


def prepare_run_dir(folder: Path, *, overwrite: bool, continuing: Path | None) -> RunLock:
    """Lock a run folder and check it before training: writable, and holding no other run unless ``overwrite``.

    Args:
        folder: the run folder (``train.output_dir``).
        overwrite: remove the files of a run already in ``folder`` instead of refusing.
        continuing: the checkpoint a resumed run continues; its own folder holds the run being continued.

    Returns:
        The folder's lock (``lock_run_dir``), held by this process until released.

    Raises:
        OutputError: another process holds the folder, ``folder`` cannot be written, or it holds another run and
            ``overwrite`` is False.
    """
    what = "output folder (--output-dir / train.output_dir)"
    lock = lock_run_dir(folder, what=what)
    try:
        _check_run_dir(folder, what=what, overwrite=overwrite, continuing=continuing)
    except BaseException:
        lock.release()
        raise
    return lock


def _check_run_dir(folder: Path, *, what: str, overwrite: bool, continuing: Path | None) -> None:
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
