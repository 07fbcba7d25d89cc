"""THUMOS14 ``Ambiguous_test.txt`` (W-TALC, RSKP): segments whose action is unclear, ignored when scoring."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError

AMBIGUOUS_FILE = "Ambiguous_test.txt"


def read_ambiguous(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read lines ``<video> <start> <end>`` (split on any whitespace; blank lines ignored).

    Returns:
        video id -> (k, 2) float64 array of [start, end] seconds, in file order.

    Raises:
        DataError: the file does not exist, or a line does not have exactly three fields with numeric bounds
            (named by ``path:line``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"ambiguous-segment file {path} does not exist; pass the path of {AMBIGUOUS_FILE}")
    out: dict[str, list[tuple[float, float]]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 3:
                    raise ValueError(f"{len(fields)} fields")
                start, end = float(fields[1]), float(fields[2])
            except ValueError as exc:
                raise DataError(
                    f"{path}:{number}: expected 'video start end' on line {number}, got {line.strip()!r} ({exc})"
                ) from exc
            out.setdefault(fields[0], []).append((start, end))
    return {video: np.asarray(segments, dtype=np.float64).reshape(-1, 2) for video, segments in out.items()}
