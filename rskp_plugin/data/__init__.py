"""Data: per-video records, the W-TALC and per-video-folder loaders, synthetic THUMOS-shaped data, batching.

Public API::

    load_wtalc(root, "Thumos14reduced", "validation")      # W-TALC .npy files -> VideoDataset
    load_folders(root, "gt.json", "train")                  # features/<split>/{rgb,flow}/<video>.npy + JSON
    train, test = make_synthetic(seed=0)                    # the default when no data is given
    write_wtalc(train, test, "out/")                        # what `rskp make-synthetic --out DIR` writes
    for batch in iterate_batches(train, 16, shuffle=True, seed=0): ...

Seconds <-> snippets: ``dataset.snippets_per_second`` (25/16 for I3D features); snippet k covers
[k / f, (k + 1) / f) seconds.
"""

from .batching import Batch, collate, iterate_batches, random_positions, uniform_positions
from .folders import load_folders, write_folders
from .records import I3D_SNIPPETS_PER_SECOND, DataWarning, VideoDataset, VideoRecord
from .synthetic import make_synthetic
from .synthetic_figures import CLASS_NAMES
from .wtalc import default_subsets, load_wtalc, read_ambiguous, write_wtalc

__all__ = [
    "CLASS_NAMES",
    "I3D_SNIPPETS_PER_SECOND",
    "Batch",
    "DataWarning",
    "VideoDataset",
    "VideoRecord",
    "collate",
    "default_subsets",
    "iterate_batches",
    "load_folders",
    "load_wtalc",
    "make_synthetic",
    "random_positions",
    "read_ambiguous",
    "uniform_positions",
    "write_folders",
    "write_wtalc",
]
