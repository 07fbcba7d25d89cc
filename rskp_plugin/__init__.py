"""rskp_plugin: Representative Snippet Knowledge Propagation for any WTAL head."""

from .config import RSKPConfig
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DuplicateHeadError,
    MissingDependencyError,
    OutputError,
    PluginLoadError,
    RSKPError,
    ShapeError,
    TrainingError,
    UnknownHeadError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DuplicateHeadError",
    "Head",
    "HeadOutput",
    "HeadSpec",
    "LocalizationSettings",
    "MissingDependencyError",
    "OutputError",
    "PluginLoadError",
    "Propagated",
    "RSKPConfig",
    "RSKPError",
    "RSKPWrapper",
    "ShapeError",
    "TrainingError",
    "UnknownHeadError",
    "affine_branches",
    "available_heads",
    "create_head",
]


#: Names resolved on first use: they need torch, and ``rskp --help`` (which imports this package) does not.
_PROTOCOLS = ("Head", "HeadOutput", "HeadSpec", "LocalizationSettings", "Propagated", "affine_branches")


def __getattr__(name: str):  # lazy: importing the package must not pull in torch and the model stack
    if name in _PROTOCOLS:
        from . import protocols

        return getattr(protocols, name)
    if name == "RSKPWrapper":
        from .method.wrapper import RSKPWrapper

        return RSKPWrapper
    if name in ("available_heads", "create_head"):
        from . import plugins

        return getattr(plugins, name)
    raise AttributeError(f"module 'rskp_plugin' has no attribute {name!r}")
