"""Atomic file writes for the dataset writers: a temporary sibling, then a rename, so that a full disk or a kill
leaves the previous file (or none), never a truncated one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from ..errors import OutputError, os_reason


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` (``.<name>.tmp``) for writing; on success it replaces ``path``, on any
    error it is removed. ``OSError`` (a full disk, no permission) becomes an ``OutputError`` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"cannot write {os.fspath(path)} ({os_reason(exc)}); nothing partial was left there. "
                              "Free space or choose another output folder") from exc
        raise


def save_npy(path: str | os.PathLike[str], array: np.ndarray, *, allow_pickle: bool = False) -> None:
    """``np.save`` written atomically (``atomic_file``)."""
    with atomic_file(path) as handle:
        np.save(handle, array, allow_pickle=allow_pickle)
