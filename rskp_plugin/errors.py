"""Exception hierarchy. Every error is an ``RSKPError`` plus the closest builtin, so callers can catch either."""

from __future__ import annotations

import errno


class RSKPError(Exception):
    """Base class of every error raised by rskp_plugin."""


class ShapeError(RSKPError, ValueError):
    """A tensor or array has the wrong shape, dtype or values (NaN/Inf)."""


class ConfigError(RSKPError, ValueError):
    """A configuration key or value is invalid."""


class UnknownHeadError(RSKPError, LookupError):
    """No installed plugin registers a head of the requested name."""


class DuplicateHeadError(RSKPError, ValueError):
    """Two plugins register a head under the same name."""


class PluginLoadError(RSKPError, ImportError):
    """A plugin's entry point failed to import or to register."""


class DataError(RSKPError, ValueError):
    """A data file or a video in it is missing, malformed or inconsistent."""


class CheckpointError(RSKPError, ValueError):
    """A checkpoint is truncated, corrupt or was written by something else."""


class OutputError(RSKPError, OSError):
    """An output file or folder cannot be written, or writing it would replace files that must be kept."""


class TrainingError(RSKPError, FloatingPointError):
    """Training cannot go on: the loss became NaN or infinite."""


class MissingDependencyError(RSKPError, ImportError):
    """An optional package a feature needs is not installed (e.g. matplotlib for ``rskp plot``)."""


def os_reason(exc: OSError) -> str:
    """Why a file could not be written, in words for an error message (full disk, permission, read-only)."""
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)
