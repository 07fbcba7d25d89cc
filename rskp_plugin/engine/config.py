"""Experiment configuration: which head, which data, the optimiser and the schedule, plus the RSKP settings.

Defaults are the official RSKP recipe (docs/design.md section 6, docs/heads.md 2.4): Adam, lr 5e-5, betas (0.9, 0.99),
weight decay 5e-4, gradients summed over 10 videos, 200 epochs, evaluation every 5 epochs. A YAML file holds only
the values that differ from these defaults, e.g.::

    head: {name: wum}
    data: {source: wtalc, root: /data/thumos14}
    train: {epochs: 50}

Packaged configs (``rskp_plugin/configs/<name>.yaml``) are found by name: ``--config quick``. A file may build on
another with ``base: quick`` (a packaged name or a path relative to the file) and hold only what it changes
(``rskp_plugin.engine.config_files``).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import attrs
from attrs.validators import and_, ge, gt, in_, instance_of, lt

from .. import recipes
from ..config import RSKPConfig
from ..config_io import apply_overrides, from_mapping, non_default_mapping, set_values
from ..errors import ConfigError
from ..sources import data_source_names
from ..yaml_io import merge_mappings
from .config_files import packaged_configs, read_config_file, resolve_config_path  # noqa: F401 - re-exported

DATA_SOURCES = data_source_names()  # the registry in rskp_plugin/sources.py
SELECTIONS = ("test", "heldout", "last")
PROTOCOLS = ("activitynet", "rskp", "wtalc")
AMP_MODES = ("auto", "bf16", "off")
ON_ERROR = ("raise", "skip")
#: The presets of ``rskp_plugin.data.make_synthetic`` (``data.PRESETS``; kept here so the config imports no data code).
SYNTHETIC_PRESETS = ("thumos14", "activitynet13")
MAX_SEED = 2**64 - 1  # torch.manual_seed takes at most 64 bits
# The default run folder: one per config, head and variant, so runs of different heads never share a folder.
DEFAULT_OUTPUT_DIR = "runs/{run}"


def _seed(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{attribute.name} must be an integer from 0 to 2**64 - 1, got {value!r}")


def _finite(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"{attribute.name} must be a finite number, got {value!r}")


def _tiou(instance: Any, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    # The same rule as `rskp evaluate --tiou`, checked before training rather than at the first evaluation.
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not value or not numbers or not all(0 < v <= 1 for v in value):
        raise ConfigError(f"train.tiou must be a non-empty list of IoU thresholds in (0, 1], got {list(value)!r}")


LOGGER_NAMES = ("jsonl", "csv", "tensorboard")  # engine.loggers.LOGGERS (kept here so the config imports no I/O)


def _names(value: Any) -> Any:
    """One name or a list of names as a tuple (the frozen config stays hashable); the rest for the validator."""
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, list) else value


def _loggers(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    unknown = [v for v in value if v not in LOGGER_NAMES]
    if not isinstance(value, tuple) or unknown or len(set(value)) != len(value):
        raise ConfigError(f"train.loggers must be a list of distinct names from {', '.join(LOGGER_NAMES)}, got "
                          f"{list(value) if isinstance(value, tuple) else value!r}")


@attrs.frozen(kw_only=True)
class HeadConfig:
    """The head to train: a registered name plus keyword arguments for its factory (``create_head``).

    Attributes:
        name: a registered head (``rskp heads``).
        options: keyword arguments of its factory.
        recipe: the RSKP settings laid under the YAML config (``rskp_plugin.recipes``): "builtin" (the head's
            registered recipe), "none" (the defaults alone) or a recipe file written by ``rskp calibrate``.
    """

    name: str = "facnet"
    options: dict[str, Any] = attrs.field(factory=dict, validator=instance_of(dict))
    recipe: str = attrs.field(default="builtin", validator=instance_of(str))


@attrs.frozen(kw_only=True)
class DataConfig:
    """Where videos come from.

    Attributes:
        source: a name of ``rskp_plugin.sources.DATA_SOURCES``: "synthetic" (generated in memory, nothing to
            download), "wtalc" (W-TALC ``.npy`` arrays) or "folders" (per-video feature folders plus an
            ActivityNet-style ground-truth JSON).
        root: data folder for "wtalc" / "folders".
        dataset_name: W-TALC file prefix (``<name>-I3D-JOINTFeatures.npy``).
        gt_json: ground-truth JSON for "folders" (relative paths are taken under ``root``).
        train_subset: subset trained on ("" = the loader's training subset).
        test_subset: subset evaluated on ("" = the loader's test subset).
        feature_dim: synthetic feature width D (the real I3D JOINT features have 2048).
        difficulty: synthetic difficulty (1.0 = the generator's default).
        num_train: synthetic training videos (THUMOS14-reduced: 200).
        num_test: synthetic test videos (THUMOS14-reduced: 212).
        seed: seed of the synthetic generator; fixed across training seeds so that every run sees the same data.
        synthetic_preset: the shape of the synthetic data: "thumos14" (fitted to THUMOS14-reduced, 20 classes) or
            "activitynet13" (200 classes, long videos with one or two long instances; the ``activitynet13``
            recipe's default).
        on_error: "raise" stops at the first bad video (missing features, wrong width, NaN, bad label or segment)
            with an error naming it; "skip" leaves such videos out with one warning listing them.
    """

    source: str = attrs.field(default="synthetic", validator=in_(DATA_SOURCES))
    root: str = ""
    dataset_name: str = "Thumos14reduced"
    gt_json: str = ""
    train_subset: str = ""
    test_subset: str = ""
    feature_dim: int = attrs.field(default=2048, validator=ge(1))
    difficulty: float = attrs.field(default=1.0, validator=ge(0))
    num_train: int = attrs.field(default=200, validator=ge(2))
    num_test: int = attrs.field(default=212, validator=ge(1))
    seed: int = attrs.field(default=0, validator=_seed)
    synthetic_preset: str = attrs.field(default="thumos14", validator=in_(SYNTHETIC_PRESETS))
    on_error: str = attrs.field(default="raise", validator=in_(ON_ERROR))


@attrs.frozen(kw_only=True)
class OptimizerConfig:
    """Adam with L2 weight decay and gradient accumulation (docs/heads.md 2.4).

    Attributes:
        lr: learning rate (constant).
        weight_decay: L2 penalty added to the gradient (Adam's ``weight_decay``, not AdamW).
        betas: Adam's betas.
        accumulation: videos per optimiser step (official: 10).
        sum_gradients: True sums the per-video gradients over the accumulated videos (official code); False
            averages them (what a true batch with mean reduction does).
        batch_size: at most this many videos per forward pass (and never more than ``accumulation``: a forward
            pass never spans two optimiser steps), padded with masks. 1 is the official
            one-video-at-a-time loop; larger values are the fast path and give the same step (see ``Trainer``).
        group_by_length: split each accumulation group into micro-batches of similar length (less padding; the
            step is the same sum of per-video gradients). False runs the group in visiting order.
        grad_clip: clip the gradient norm at this value before a step; 0 = off (official).
    """

    lr: float = attrs.field(default=5e-5, validator=[gt(0), _finite])
    weight_decay: float = attrs.field(default=5e-4, validator=ge(0))
    betas: tuple[float, float] = (0.9, 0.99)
    accumulation: int = attrs.field(default=10, validator=ge(1))
    sum_gradients: bool = True
    batch_size: int = attrs.field(default=10, validator=ge(1))
    group_by_length: bool = True
    grad_clip: float = attrs.field(default=0.0, validator=ge(0))

    def __attrs_post_init__(self) -> None:
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optimizer.betas must be two numbers in [0, 1), got {self.betas}")


def amp_mode(value: str | bool) -> str:
    """``train.amp`` as one of ``AMP_MODES``: YAML booleans keep working (true = "bf16", false = "off")."""
    if value is True:
        return "bf16"
    if value is False:
        return "off"
    if isinstance(value, str) and value.lower() in AMP_MODES:
        return value.lower()
    raise ConfigError(
        f'train.amp must be "auto" (bf16 autocast on CUDA only), "bf16" or true (on any device, the CPU included) '
        f'or "off" or false; got {value!r}'
    )


@attrs.frozen(kw_only=True)
class TrainConfig:
    """Schedule, evaluation, model selection and run settings.

    Attributes:
        epochs: training epochs (official: 200).
        eval_interval: evaluate every this many epochs (official: 5) and after the last one.
        eval_batch_size: videos per evaluation forward pass (padded; results equal one video at a time).
        selection: which evaluation is reported as "best": "heldout" (default) trains on part of the training
            split and picks the epoch on the rest (honest); "test" picks the best test mAP (what the paper and the
            official code do: optimistic, a choice made by reading test scores); "last" reports the final epoch.
            Every table, JSON file and plot names the selection behind its numbers.
        heldout_fraction: share of the training videos held out when ``selection`` is "heldout".
        protocol: detection mAP protocol ("activitynet" official ActivityNet code; "rskp"/"wtalc" the W-TALC
            style of the official RSKP code, see docs/evaluation.md).
        tiou: IoU thresholds; the reported average is their mean (paper: 0.1:0.1:0.7).
        seed: seed for torch, numpy, python and the data order (official torch seed: 2).
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
        amp: bfloat16 autocast: "auto" on CUDA only (CPU runs stay float32), "bf16" (or true) on any device,
            the CPU included, "off" (or false) never. Stored as one of "auto", "bf16", "off".
        checkpoint_interval: write ``last.pt`` every this many epochs (0 = only at the end).
        output_dir: run folder for checkpoints and ``results.json`` ("" = write nothing). ``{run}`` becomes
            ``<config>-<head>`` plus ``-norskp`` for the head alone, ``{config}`` the config's name (the packaged
            name or the YAML file's stem; "default" without one) and ``{head}`` the head's name. The default,
            ``runs/{run}``, gives every config, head and variant its own folder (``runs/quick-wum``).
        diagnostics: at every evaluation, record each loss term and the mAP of every branch (main, intra, inter,
            the distillation teacher) on the test set, in the history and ``metrics.jsonl`` (README "Diagnostics";
            costs a few percent of training time). False records only the reported (fused) numbers.
        loggers: the metric logs written to the run folder (``engine.loggers``): "jsonl" (``metrics.jsonl``, one
            line per evaluation; ``rskp plot`` reads it), "csv" (``metrics.csv``, one row per epoch: training loss
            terms every epoch, evaluation metrics at evaluation epochs), "tensorboard" (``tensorboard/``; needs
            ``pip install "rskp-plugin[tensorboard]"``). Default: jsonl and csv.
        tensorboard: the older switch for TensorBoard: true adds "tensorboard" to ``loggers``.
        ema: the decay of a moving average of the weights, updated after every optimiser step and used for every
            evaluation (so for the selection, ``best.pt``'s predictions and the reported numbers); 0 = off
            (default). 0.999 averages over about the last 1000 steps (``engine.ema``).
        threads: CPU threads of torch's intra-op pool (``torch.set_num_threads``), set when a ``Trainer`` is built;
            0 = auto: ``OMP_NUM_THREADS`` when set, else 1. One thread is the default because torch's threads
            spin-wait: on 2 cores shared with other busy processes, 2 threads ran an epoch 13-26x slower than
            1 thread (benchmarks/RESULTS.md, "Threads on a busy machine").
    """

    epochs: int = attrs.field(default=200, validator=ge(1))
    eval_interval: int = attrs.field(default=5, validator=ge(1))
    eval_batch_size: int = attrs.field(default=16, validator=ge(1))
    selection: str = attrs.field(default="heldout", validator=in_(SELECTIONS))
    heldout_fraction: float = attrs.field(default=0.1, validator=and_(gt(0), lt(1)))
    protocol: str = attrs.field(default="activitynet", validator=in_(PROTOCOLS))
    tiou: tuple[float, ...] = attrs.field(default=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7), validator=_tiou)
    seed: int = attrs.field(default=2, validator=_seed)
    device: str = "auto"
    amp: str | bool = attrs.field(default="auto", converter=amp_mode)
    checkpoint_interval: int = attrs.field(default=1, validator=ge(0))
    output_dir: str = DEFAULT_OUTPUT_DIR
    diagnostics: bool = True
    loggers: tuple[str, ...] = attrs.field(default=("jsonl", "csv"), converter=_names, validator=_loggers)
    tensorboard: bool = False
    ema: float = attrs.field(default=0.0, validator=and_(ge(0), lt(1)))
    threads: int = attrs.field(default=0, validator=ge(0))

    @property
    def active_loggers(self) -> tuple[str, ...]:
        """``loggers``, with "tensorboard" added where the older ``tensorboard`` switch is on."""
        extra = ("tensorboard",) if self.tensorboard and "tensorboard" not in self.loggers else ()
        return self.loggers + extra


@attrs.frozen(kw_only=True)
class ExperimentConfig:
    """One training run: ``rskp_enabled`` False trains the head alone (the "head" rows of Table 6)."""

    head: HeadConfig = attrs.field(factory=HeadConfig)
    data: DataConfig = attrs.field(factory=DataConfig)
    optimizer: OptimizerConfig = attrs.field(factory=OptimizerConfig)
    train: TrainConfig = attrs.field(factory=TrainConfig)
    rskp_enabled: bool = True
    rskp: RSKPConfig = attrs.field(factory=RSKPConfig)


def load_experiment(
    name_or_path: str | os.PathLike[str] | None = None,
    overrides: list[str] | None = None,
    *,
    values: dict[str, Any] | None = None,
) -> ExperimentConfig:
    """Load an experiment config in layers and resolve its run folder.

    Layers, each overriding the one before: the defaults, the head's recipe (``head.recipe``: the registered one
    by default, ``rskp_plugin.recipes``), the YAML file (with its chain of ``base:`` configs under it),
    ``values`` (command-line flags), ``overrides`` (``--set``). The head and its recipe are read from the upper
    layers first, so ``--set head.name=stpn`` brings STPN's recipe. A ``head.options`` key that only a packaged
    config sets (the quick config's ``embed_dim``) is left out, with a ``PackagedOptionNote`` warning, when the
    head's factory does not take it; one given by the user's file, a flag or ``--set`` is always passed on.

    Args:
        name_or_path: a YAML file or packaged config name; None = the defaults.
        overrides: ``a.b=value`` strings (``--set``), values parsed as YAML; applied last.
        values: dotted keys set to typed values (command-line flags such as ``--data-root``), before ``overrides``.

    Returns:
        The config with concrete values everywhere, ``train.output_dir`` placeholders filled in
        (``expand_output_dir``).
    """
    layers = None if name_or_path is None else read_config_file(name_or_path)
    where = None if layers is None else layers.files[0]
    raw = {} if layers is None else layers.data

    def build(data: Any) -> ExperimentConfig:
        try:
            config = from_mapping(ExperimentConfig, data)
        except ConfigError as exc:
            raise ConfigError(f"{os.fspath(where)}: {exc}" if where is not None else str(exc)) from exc
        return apply_overrides(set_values(config, values or {}), list(overrides or []))

    config = build(raw)
    if layers is not None and layers.packaged_options:
        raw = _drop_packaged_options(raw, layers, config.head.name)
        config = build(raw)
    recipe = recipes.resolve(config.head.name, config.head.recipe)
    if recipe.values:
        config = build(merge_mappings({"rskp": recipes.nested(recipe.values)}, raw))
    return expand_output_dir(discover_dataset_name(config), config_name(name_or_path))


class PackagedOptionNote(UserWarning):
    """A ``head.options`` value of a packaged config was left out because the head does not take it."""


def _drop_packaged_options(raw: Any, layers: Any, head: str) -> Any:
    """``raw`` without the ``head.options`` keys that came from a packaged config (``ConfigFile.packaged_options``)
    and that the head's factory does not take, each named in a ``PackagedOptionNote``. Options a user's file,
    a flag or ``--set`` gives are kept: a head that refuses them is an error (``build_model``)."""
    from ..plugins import unaccepted_options

    dropped = unaccepted_options(head, sorted(layers.packaged_options))
    if not dropped:
        return raw
    options = {k: v for k, v in raw["head"]["options"].items() if k not in dropped}
    names = ", ".join(f"head.options.{k}" for k in dropped)
    warnings.warn(f"head {head!r} takes no {', '.join(dropped)}: {names} of the packaged config "
                  f"{layers.files[-1].stem} left out", PackagedOptionNote, stacklevel=3)
    return {**raw, "head": {**raw["head"], "options": options}}


FEATURES_SUFFIX = "-I3D-JOINTFeatures.npy"


def discover_dataset_name(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with ``data.dataset_name`` taken from its W-TALC folder where it was left at the default and the
    folder holds no features file of that name but exactly one ``<NAME>-I3D-JOINTFeatures.npy``; ``ConfigError``
    lists the names where it holds several (so ``--dataset-name`` is only needed to choose)."""
    data = config.data
    default = attrs.fields(DataConfig).dataset_name.default
    if data.source != "wtalc" or not data.root or data.dataset_name != default:
        return config
    root = Path(data.root).expanduser()
    try:
        if (root / f"{default}{FEATURES_SUFFIX}").exists() or not root.is_dir():
            return config  # the default's file, or a folder the loader will name in its own error
        names = sorted(p.name[: -len(FEATURES_SUFFIX)] for p in root.iterdir() if p.name.endswith(FEATURES_SUFFIX))
    except OSError:
        return config  # unreadable: the loader says so with the path
    if len(names) > 1:
        raise ConfigError(f"{os.fspath(root)} holds W-TALC features of several datasets ({', '.join(names)}); "
                          f"choose one with --dataset-name (or data.dataset_name)")
    if not names:
        return config
    return attrs.evolve(config, data=attrs.evolve(data, dataset_name=names[0]))


def config_name(name_or_path: str | os.PathLike[str] | None) -> str:
    """What ``{config}`` stands for in ``train.output_dir``: a packaged name or a file's stem; "default" for None."""
    if name_or_path is None:
        return "default"
    path = Path(name_or_path)
    return path.stem if path.suffix in (".yaml", ".yml") else path.name


def expand_output_dir(config: ExperimentConfig, name: str = "default") -> ExperimentConfig:
    """``config`` with ``{run}``, ``{config}`` and ``{head}`` in ``train.output_dir`` replaced (see ``TrainConfig``).

    A folder without placeholders is returned as it is, so expanding twice changes nothing.
    """
    run = f"{name}-{config.head.name}" + ("" if config.rskp_enabled else "-norskp")
    folder = config.train.output_dir
    for key, value in (("{run}", run), ("{config}", name), ("{head}", config.head.name)):
        folder = folder.replace(key, value)
    if folder == config.train.output_dir:
        return config
    return attrs.evolve(config, train=attrs.evolve(config.train, output_dir=folder))


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Plain-data form (lists, dicts, numbers) for JSON files and checkpoints; ``from_mapping`` reads it back."""
    return attrs.asdict(config)


def config_to_yaml(config: ExperimentConfig) -> str:
    """The config as a YAML experiment file: its non-default values, and every ``rskp`` value whatever its source,
    so that ``rskp train --config`` reads it back to an equal config even after the head's recipe changed."""
    import yaml

    data = non_default_mapping(config)
    data["rskp"] = non_default_mapping(config.rskp, everything=True)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
