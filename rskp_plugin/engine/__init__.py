"""Training engine: configs, the training loop (official RSKP recipe, batched), evaluation and checkpoints.

    from rskp_plugin.engine import Trainer, load_experiment
    trainer = Trainer(load_experiment("quick", ["head.name=wum"]))
    result = trainer.fit()
    result.best["test"]["avg_map_percent"]  # AVG mAP (%) of the selected evaluation
"""

from .build import Datasets, build_datasets, build_model, resolve_device, resolve_threads, seed_everything, set_threads
from .config import (
    DataConfig,
    ExperimentConfig,
    HeadConfig,
    OptimizerConfig,
    TrainConfig,
    config_to_dict,
    config_to_yaml,
    load_experiment,
    packaged_configs,
    resolve_config_path,
)
from .inference import EvalResult, collect_outputs, evaluate_model, forward_batches, predict_detections
from .record import FitResult, environment, git_commit
from .trainer import Trainer

__all__ = [
    "DataConfig",
    "Datasets",
    "EvalResult",
    "ExperimentConfig",
    "FitResult",
    "HeadConfig",
    "OptimizerConfig",
    "TrainConfig",
    "Trainer",
    "build_datasets",
    "build_model",
    "collect_outputs",
    "config_to_dict",
    "config_to_yaml",
    "environment",
    "evaluate_model",
    "forward_batches",
    "git_commit",
    "load_experiment",
    "packaged_configs",
    "predict_detections",
    "resolve_config_path",
    "resolve_device",
    "resolve_threads",
    "seed_everything",
    "set_threads",
]
