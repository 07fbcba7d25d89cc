"""The contract between ``RSKPWrapper`` and any WTAL head.

Symbols: B batch, T snippets, D input feature size, d embedding size, C action classes (C+1 columns when a
head has a background class, which is then the last column).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Protocol, runtime_checkable

import attrs
from torch import Tensor

if TYPE_CHECKING:
    from .localization import LocalizationSettings


class HeadOutput(NamedTuple):
    """What a head returns for one batch of features (a NamedTuple so DDP and torch.compile see the tensors).

    Attributes:
        video_scores: (B, C) video-level class probabilities in [0, 1], action classes only.
        tcam: (B, T, C) or (B, T, C+1) snippet-wise class logits; the distillation target and student (eq. 7).
        attention: (B, T) foreground attention / actionness in [0, 1], or None if the head has none.
        cas: (B, T, C) class activation sequence that localisation thresholds.
        extras: tensors a head's own losses need beyond the above (e.g. feature magnitudes); may be empty.
    """

    video_scores: Tensor
    tcam: Tensor
    attention: Tensor | None
    cas: Tensor
    extras: dict[str, Tensor] = {}


@runtime_checkable
class Head(Protocol):
    """A weakly supervised temporal action localisation head that RSKP can wrap.

    ``isinstance(obj, Head)`` only proves the names exist; ``rskp_plugin.testing.check_head`` checks behaviour.
    Every method must ignore padded snippets (``mask`` False) so that a padded batch gives the numbers of each
    video alone.
    """

    num_classes: int

    def embed(self, features: Tensor, mask: Tensor) -> Tensor:
        """Learnable embedding of frozen backbone features: (B, T, D), mask (B, T) -> (B, T, d), zero on padding."""
        ...

    def __call__(self, features: Tensor, mask: Tensor) -> HeadOutput:
        """Run the head on embedded features (B, T, d) with mask (B, T); works on F, F^a and F^e alike."""
        ...

    def classify(self, x: Tensor) -> Tensor:
        """Snippet-wise class logits with no temporal context: (..., d) -> (..., C) or (..., C+1)."""
        ...

    def classification_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> Tensor:
        """Video-level classification loss (a scalar); applied to every RSKP branch. labels (B, C) multi-hot."""
        ...

    def auxiliary_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """The head's own extra loss terms, already weighted (main branch only); may be empty."""
        ...


@attrs.frozen(kw_only=True)
class HeadSpec:
    """One registered head.

    Attributes:
        name: the name users pass to ``create_head``; unique across installed plugins.
        factory: builds the head; accepts ``num_classes`` and ``feature_dim`` plus head-specific keywords.
        summary: one line shown by ``rskp heads``.
        plugin: the plugin module or object that registered it (filled in by the plugin manager).
        distribution: the installed distribution providing the plugin, e.g. ``rskp-plugin 0.1.0``.
    """

    name: str = attrs.field(validator=attrs.validators.matches_re(r"[A-Za-z0-9_.\-]+"))
    factory: Callable[..., Any]
    summary: str = ""
    plugin: str = ""
    distribution: str = ""


def localization_settings(head: Any) -> "LocalizationSettings":
    """The localisation settings a head asks for, or the RSKP defaults if it declares none."""
    from .localization import LocalizationSettings

    settings = getattr(head, "localization", None)
    return settings if settings is not None else LocalizationSettings()
