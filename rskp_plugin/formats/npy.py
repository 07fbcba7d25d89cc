"""Reading ``.npy`` files without running code: object arrays go through a restricted unpickler.

numpy stores an object array (``dtype=object``: ragged lists, per-video arrays) as a pickle, and a plain pickle can
run any code. Plain arrays (numbers, fixed-width strings) never need one. So every ``.npy`` file is first checked to
be a ``.npy`` file at all (the numpy header: a raw pickle named ``.npy`` is refused, never loaded); its header's
dtype then decides: an object array is read only where the caller says the format needs one (the W-TALC feature
file, ``segments.npy``, ``labels.npy``, ``labels_all.npy``, the object arrays ``rskp predict`` accepts); anywhere
else it is an error that says how to re-save the file as a plain array. A read error never falls back to pickle.

Where an object array is read, its pickle is read by ``SafeUnpickler``, which rebuilds numpy arrays, numpy scalars
and dtypes and the plain values pickle stores itself (lists, tuples, dicts, numbers, strings, bytes, None) and
nothing else: a pickle that asks for any other class or function (``os.system``, ``builtins.eval``, a class with a
``__reduce__``) is refused with a ``DataError`` before that object is looked up, so no code from the file runs.
The original W-TALC files (Python 2 pickles) and those numpy writes today read as before.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from ..errors import DataError

NPY_MAGIC = b"\x93NUMPY"


def why_not_a_file(path: str | os.PathLike) -> str:
    """Why ``path`` is not a readable regular file, for messages: "does not exist", "is a symbolic link that leads
    nowhere (a link loop or a missing target)", "is not a regular file (a device, FIFO or socket)" or "is a
    folder"."""
    try:
        if os.path.isdir(path):
            return "is a folder"
        if os.path.exists(path):
            return "is not a regular file (a device, FIFO or socket)"
        if os.path.lexists(path):
            return "is a symbolic link that leads nowhere (a link loop or a missing target)"
    except (OSError, ValueError):
        pass
    return "does not exist"


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
        if dtype.hasobject:
            return _load_object_array(path, what)
        return np.load(path, allow_pickle=False)
    except DataError:
        raise
    except MemoryError as exc:
        raise DataError(f"cannot read {what} {path}: it does not fit in memory ({exc}); is it the right file?") from exc
    except Exception as exc:  # noqa: BLE001 - truncated data, a broken pickle: the same clear error
        raise DataError(
            f"cannot read {what} {path}: it is truncated or corrupt ({type(exc).__name__}: {exc}); write it again"
        ) from exc


#: The only globals a pickled object array may name: what numpy's own pickles of arrays, dtypes and scalars use
#: (under their numpy 1 and numpy 2 module names) and ``_codecs.encode`` (bytes in protocol-2 pickles of Python 3).
#: Each maps to the object numpy itself uses today, so a file written by another numpy version reads the same.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(module, "_reconstruct"): np.empty(0).__reduce__()[0]
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): np.float64(0).__reduce__()[0]
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "_frombuffer"): np.zeros(1).__reduce_ex__(5)[0]
       for module in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("codecs").encode,
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside ``_ALLOWED_GLOBALS``; raised before it is looked up."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, dtypes and scalars and the plain values pickle stores itself, and
    refuses every other global (so no ``__reduce__`` payload can run): ``SafeUnpickler(handle).load()``."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafePickleError(f"{module}.{name}")
        return allowed


def _load_object_array(path: str, what: str) -> np.ndarray:
    """An object ``.npy`` file read as ``np.load(allow_pickle=True)`` would read it, through ``SafeUnpickler``."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(handle)
        else:
            np.lib.format.read_array_header_2_0(handle)
        try:
            array = SafeUnpickler(handle, encoding="bytes").load()
        except UnsafePickleError as exc:
            raise DataError(
                f"refused {what} {path}: its pickle asks for {exc}, which is not a numpy array or a plain value "
                "(number, string, list); rskp does not load it, as it could run code. Re-save the file with numpy "
                "from plain data"
            ) from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"cannot read {what} {path}: its pickle holds a {type(array).__name__}, not an array; "
                        "write it with numpy.save")
    return array

