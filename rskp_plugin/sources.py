"""The data sources a run can read: one registry that the config, the builders and every ``--data`` option use.

A source is a name (``data.source`` in a config, ``--data`` on the command line) and a loader that returns the
training and/or test set of a run's data settings (``DataSettings``). Adding a source touches ``DATA_SOURCES`` here
and its reader in ``rskp_plugin.data`` (CONTRIBUTING.md, "Adding a data format"). This module imports no data code
until a loader runs, so the command line can list the names cheaply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import attrs


class DataSettings(Protocol):
    """What a loader reads of a run's data settings (``rskp_plugin.engine.config.DataConfig`` has these and more).

    The registry depends on this shape, not on the engine's config, which imports the registry for its validator.
    """

    seed: int
    feature_dim: int
    difficulty: float
    num_train: int
    num_test: int
    synthetic_preset: str
    dataset_name: str
    train_subset: str
    test_subset: str
    gt_json: str
    on_error: str


#: ``(data settings, data root or None, splits) -> one dataset per split``; a split is "train" or "test".
Loader = Callable[[DataSettings, "Path | None", Sequence[str]], tuple[Any, ...]]


@attrs.frozen
class DataSource:
    """One data source.

    Attributes:
        name: what ``data.source`` and ``--data`` call it.
        load: the loader (see ``Loader``): the datasets of the requested splits, in order.
        needs_root: the source reads files under ``data.root`` (``--data-root``), which must then be a folder.
        summary: one line for help texts and docs.
    """

    name: str
    load: Loader
    needs_root: bool = True
    summary: str = ""


def _subset(data: DataSettings, split: str, defaults: Mapping[str, str]) -> str:
    """The subset read for ``split``: ``data.train_subset``/``data.test_subset`` if set, else the reader's default."""
    chosen = data.train_subset if split == "train" else data.test_subset
    return chosen or defaults[split]


def _synthetic(data: DataSettings, root: Path | None, splits: Sequence[str]) -> tuple[Any, ...]:
    from .data import make_synthetic

    train, test = make_synthetic(
        seed=data.seed, feature_dim=data.feature_dim, difficulty=data.difficulty, num_train=data.num_train,
        num_test=data.num_test, preset=data.synthetic_preset,
    )
    return tuple(train if split == "train" else test for split in splits)


def _wtalc(data: DataSettings, root: Path | None, splits: Sequence[str]) -> tuple[Any, ...]:
    from .data import default_subsets, load_wtalc

    defaults = dict(zip(("train", "test"), default_subsets(data.dataset_name)))
    # Segments past the video end are kept as annotated, as the official evaluations do (docs/heads.md 1).
    return tuple(
        load_wtalc(root, data.dataset_name, _subset(data, split, defaults), out_of_range="keep",
                   on_error=data.on_error)
        for split in splits
    )


def _folders(data: DataSettings, root: Path | None, splits: Sequence[str]) -> tuple[Any, ...]:
    from .data import load_folders

    gt = root / (data.gt_json or "gt.json")  # a relative gt_json lies under root; an absolute one stays as it is
    defaults = {"train": "train", "test": "test"}
    return tuple(
        load_folders(root, gt, _subset(data, split, defaults), out_of_range="keep", on_error=data.on_error)
        for split in splits
    )


#: Every data source, in the order help texts list them.
DATA_SOURCES: dict[str, DataSource] = {
    source.name: source
    for source in (
        DataSource("synthetic", _synthetic, needs_root=False,
                   summary="THUMOS14- or ActivityNet1.3-shaped features generated in memory (nothing to download)"),
        DataSource("wtalc", _wtalc, summary="W-TALC .npy arrays: <root>/<Name>-I3D-JOINTFeatures.npy + annotations"),
        DataSource("folders", _folders,
                   summary="per-video features/<split>/<modality>/<video>.npy + an ActivityNet-format gt.json"),
    )
}


def data_source_names() -> tuple[str, ...]:
    """The names of every data source, for ``--data`` choices and the config's validator."""
    return tuple(DATA_SOURCES)
