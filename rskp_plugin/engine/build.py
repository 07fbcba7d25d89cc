"""Building blocks of a run: device, seeds, datasets and the model, each from an ``ExperimentConfig``."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import attrs
import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError, RSKPError
from .config import ExperimentConfig


@attrs.define
class Datasets:
    """The videos of one run.

    Attributes:
        train: what the model is trained on (the training split minus the held-out part, if any).
        test: what is evaluated and reported.
        heldout: part of the training split kept out of training for honest model selection, or None.
        collate: builds a padded batch (features, mask, labels, ...) from a list of videos.
    """

    train: Any
    test: Any
    heldout: Any = None
    collate: Callable[[Sequence[Any]], Any] = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.collate is None:
            from ..data import collate

            self.collate = collate

    @property
    def feature_dim(self) -> int:
        """D, the width of the input features."""
        return int(np.shape(self.train.videos[0].features)[1])


def resolve_device(name: str, *, setting: str = "train.device (--device)") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; an unavailable CUDA device is a ``ConfigError``.

    Args:
        name: "auto", "cpu", "cuda" or "cuda:N".
        setting: how the user gave the device, named in errors ("--device" for ``rskp predict``).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f'{setting} "{name}" is not a device; use auto, cpu, cuda or cuda:N') from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f'{setting} "{name}" asked for CUDA but torch sees no GPU; use cpu or auto')
    return device


def resolve_threads(threads: int = 0) -> int:
    """The number of CPU threads for torch: ``threads`` if positive, else (auto) ``OMP_NUM_THREADS`` when it is set
    to a positive integer, else 1.

    One thread by default: torch's worker threads spin-wait, so on 2 cores shared with other busy processes, 2
    threads made an epoch 13-26x slower than 1 thread (benchmarks/RESULTS.md, "Threads on a busy machine").
    """
    if threads > 0:
        cores = available_cores()
        if threads > cores:
            warnings.warn(f"--threads / train.threads is {threads} but this process may use {cores} CPU core(s): "
                          "torch's threads spin-wait, so more threads than cores make every step much slower; pass "
                          f"--threads {cores} or fewer (0 = auto)", RuntimeWarning, stacklevel=3)
        return threads
    try:
        env = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        env = 0
    return env if env > 0 else 1


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_threads(threads: int = 0) -> int:
    """``torch.set_num_threads(resolve_threads(threads))``; returns the number set."""
    count = resolve_threads(threads)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _root(config: ExperimentConfig) -> Path:
    data = config.data
    if not data.root:
        raise DataError(
            f'data.source is "{data.source}" but no data root was given; pass --data-root DIR '
            "(or set data.root in the config), or use --data synthetic"
        )
    root = Path(data.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {os.fspath(root)!r} does not exist or is not a folder; check --data-root")
    return root


def build_datasets(config: ExperimentConfig) -> Datasets:
    """Load or generate the train/test sets named by ``config.data``; hold out part of train when selecting on it."""
    d = config.data
    train, test = load_splits(config, ("train", "test"))
    for name, ds in (("training", train), ("test", test)):
        if not len(ds.videos):
            raise DataError(f"the {name} set of {d.source} data at {d.root or '(synthetic)'} holds no videos")
    heldout = None
    if config.train.selection == "heldout":
        train, heldout = train.split(config.train.heldout_fraction, seed=d.seed)
    return Datasets(train=train, test=test, heldout=heldout)


def load_splits(config: ExperimentConfig, splits: Sequence[str]) -> tuple[Any, ...]:
    """The datasets of ``splits`` ("train", "test") of ``config.data``, read by its source's loader
    (``rskp_plugin.sources.DATA_SOURCES``)."""
    from ..sources import DATA_SOURCES

    source = DATA_SOURCES[config.data.source]
    return source.load(config.data, _root(config) if source.needs_root else None, splits)


def load_split(config: ExperimentConfig, which: str) -> Any:
    """The training (``which="train"``) or test set of ``config.data``, loaded exactly as ``build_datasets`` does
    (``rskp evaluate --data`` scores predictions against the same test set a run was evaluated on)."""
    return load_splits(config, (which,))[0]


def build_model(config: ExperimentConfig, *, num_classes: int, feature_dim: int) -> nn.Module:
    """The head named by ``config.head``, wrapped by RSKP (``rskp_enabled``) or alone (``HeadOnlyModel``)."""
    from ..plugins import create_head
    from ..method.model import HeadOnlyModel
    from ..method.wrapper import RSKPWrapper

    options = dict(config.head.options)
    try:
        head = create_head(config.head.name, num_classes=num_classes, feature_dim=feature_dim, **options)
    except (TypeError, ValueError, RuntimeError) as exc:  # an unknown keyword, or a value the head refuses
        if isinstance(exc, RSKPError):
            raise
        given = ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) or "none"
        unknown = [k for k in options if f"'{k}'" in str(exc) and "unexpected keyword" in str(exc)]
        fix = (f"the head takes no {unknown[0]!r}: remove head.options.{unknown[0]} from your config file or --set "
               f"(--set 'head.options={{}}' passes no options at all)" if unknown else
               "check head.options (--set head.options.KEY=VALUE) against the head's documented keywords")
        raise ConfigError(
            f'head "{config.head.name}" rejected its options ({given}): {type(exc).__name__}: '
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else '?'}. {fix[0].upper()}{fix[1:]}"
        ) from exc
    return RSKPWrapper(head, config.rskp) if config.rskp_enabled else HeadOnlyModel(head, config.rskp)
