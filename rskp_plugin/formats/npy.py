"""Reading ``.npy`` files without running code: only formats that need Python objects are unpickled.

numpy stores an object array (``dtype=object``: ragged lists, per-video arrays) as a pickle, and unpickling can run
any code. Plain arrays (numbers, fixed-width strings) never need it. So every ``.npy`` file is first checked to be
a ``.npy`` file at all (the numpy header: a raw pickle named ``.npy`` is refused, never loaded); its header's dtype
then decides: an object array is read only where the caller says the format needs one (the W-TALC feature file,
``segments.npy``, ``labels.npy``, ``labels_all.npy``, the object arrays ``rskp predict`` accepts); anywhere else it is
an error that says how to re-save the file as a plain array. A read error never falls back to pickle.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import DataError

NPY_MAGIC = b"\x93NUMPY"


def npy_header(path: str | os.PathLike, what: str) -> tuple[np.dtype, tuple[int, ...]]:
    """dtype and shape from the header of a ``.npy`` file, reading nothing else.

    Raises:
        DataError: the file cannot be opened, is not a ``.npy`` file (e.g. a pickle or random bytes), or its header
            is damaged.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(NPY_MAGIC))
            if head == NPY_MAGIC:
                handle.seek(0)
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, SyntaxError, TokenError... on a bad header
        raise DataError(f"cannot read {what} {path}: its .npy header is damaged ({exc}); write it again") from exc
    if head != NPY_MAGIC:
        kind = "a Python pickle, which rskp never loads" if head[:1] == b"\x80" else "not a .npy file"
        raise DataError(f"cannot read {what} {path}: it is {kind} (no numpy .npy header); write it with numpy.save")
    return dtype, tuple(shape)


def load_npy(path: str | os.PathLike, what: str, *, pickled: bool = False, pickled_files: str = "") -> np.ndarray:
    """Read a ``.npy`` file; an object array only if ``pickled`` (its format needs one).

    Args:
        path: the file.
        what: what the file is, for messages ("annotation file", "feature file").
        pickled: the format of this file needs an object array, which numpy stores as a pickle: read it (with
            ``encoding="bytes"``, so Python 2 pickles of the original W-TALC files load too).
        pickled_files: for the error on an unexpected object array: which files are unpickled instead.

    Raises:
        DataError: not a ``.npy`` file, an object array where none is needed, a truncated or corrupt file.
    """
    dtype, _ = npy_header(path, what)
    path = os.fspath(path)
    if dtype.hasobject and not pickled:
        which = f"; rskp unpickles only {pickled_files}" if pickled_files else ""
        raise DataError(
            f"{what} {path} holds Python objects (dtype object), which numpy stores as a pickle that could run code"
            f"{which}. Re-save it as a plain array, e.g. np.save(path, np.array(names, dtype=bytes))"
        )
    try:
        return np.load(path, allow_pickle=dtype.hasobject, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - truncated data, a broken pickle: the same clear error
        raise DataError(
            f"cannot read {what} {path}: it is truncated or corrupt ({type(exc).__name__}: {exc}); write it again"
        ) from exc
