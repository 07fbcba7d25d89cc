"""The model interface shared by ``RSKPWrapper`` and ``HeadOnlyModel`` (the head alone), and what both return.

The training loop, evaluation and diagnostics see a model only through ``Model``: a head (with its ``HeadTraits``
resolved once, when the model is built), a config, an optional memory bank and the forward/inference methods.

Symbols: B batch, T snippets, D input feature size, d embedding size, C action classes, n representatives.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..config import RSKPConfig
from ..errors import ShapeError
from .losses import LossWeights, attention_normalization, loss_weights
from .memory import MemoryBank
from ..protocols import (
    Head, HeadOutput, HeadTraits, declared_recipe_attributes, head_traits, missing_head_parts, recipe_attribute_message,
)
from ..shapes import as_mask, expect, expect_finite


class RSKPOutput(NamedTuple):
    """Everything one forward returns (the same type in training and inference).

    Attributes:
        video_scores: (B, C) inference video scores (main fused with intra, as configured).
        cas: (B, T, C) inference class activation sequence.
        attention: (B, T) main-branch attention, or None.
        main, intra, inter: the branch outputs (intra/inter None where the branch did not run).
        representatives: (B, n, d) online representative snippets mu^a (zero where a method made fewer than n;
            ``rskp.summarizer.method: features``: F itself, (B, T, d)), or None.
        losses: named, weighted loss terms (empty without labels).
        loss: their sum, or None without labels.
        score_cas: (B, T, C) the fused proposal-scoring signal of a head that has one (``HeadOutput.score_cas``),
            fused over branches like ``cas``; None otherwise.
    """

    video_scores: Tensor
    cas: Tensor
    attention: Tensor | None
    main: HeadOutput
    intra: HeadOutput | None
    inter: HeadOutput | None
    representatives: Tensor | None
    losses: dict[str, Tensor]
    loss: Tensor | None
    score_cas: Tensor | None = None


class Branches(NamedTuple):
    """Every prediction of one inference pass, for diagnostics (``RSKPWrapper.branch_outputs``).

    Attributes:
        output: what ``forward(features, mask)`` returns, the same numbers (the fused prediction the run reports),
            with ``inter`` filled in where labels were given and the memory bank is ready.
        teacher: the distillation teacher as a prediction (its ``tcam`` is exactly the pseudo-label TCAM; see
            ``RSKPWrapper.branch_outputs``), or None for the head alone.
        teacher_rule: how the teacher's CAS was made: "intra" (memory not ready: the teacher is the intra branch),
            "head" (the head's own rules, exact) or "softmax" (softmax(T)[..., :C] x attention); "" without RSKP.
    """

    output: RSKPOutput
    teacher: HeadOutput | None
    teacher_rule: str


@runtime_checkable
class Model(Protocol):
    """What the trainer, evaluation and diagnostics use of a model (``RSKPWrapper`` or ``HeadOnlyModel``).

    Attributes:
        head: the wrapped head; traits: its optional parts (``HeadTraits``), resolved when the model was built.
        config: the RSKP hyper-parameters (``HeadOnlyModel`` reads its main-branch loss weights only).
        memory: the memory bank, or None without RSKP; memory_ready: whether the inter-video branch runs.
    """

    head: Head
    traits: HeadTraits
    config: RSKPConfig
    memory: MemoryBank | None

    @property
    def memory_ready(self) -> bool: ...

    def __call__(self, features: Tensor, mask: Tensor | None = None, labels: Tensor | None = None) -> RSKPOutput:
        """features (B, T, D), mask (B, T), labels (B, C) or None -> RSKPOutput (losses with labels)."""
        ...

    def initialize_memory(self, batches: Iterable[tuple[Tensor, Tensor | None, Tensor]]) -> None:
        """The end-of-warm-up pass filling the memory bank (a no-op without one)."""
        ...

    def start_epoch(self, epoch: int, memory_batches: Any = None) -> None:
        """Called by the training loop before epoch ``epoch`` (0-based) runs: epoch-dependent loss weights, and the
        memory bank filled from ``memory_batches`` once the warm-up is over (``RSKPWrapper.start_epoch``)."""
        ...

    def memory_fill_due(self, epochs_done: int) -> bool:
        """Whether the memory bank must be filled before training goes on, ``epochs_done`` epochs into a run."""
        ...

    def branch_outputs(self, features: Tensor, mask: Tensor | None = None, labels: Tensor | None = None) -> Branches:
        """Inference with every branch, for diagnostics."""
        ...

    def predict(self, features: Tensor, mask: Tensor | None = None) -> RSKPOutput:
        """Inference in eval mode."""
        ...


def check_head(head: Any) -> HeadTraits:
    """``TypeError`` naming what ``head`` lacks of the ``Head`` protocol; else its ``HeadTraits``."""
    attributes, methods = missing_head_parts(head)
    missing = attributes + methods
    if missing or not callable(head):
        raise TypeError(
            f"{type(head).__name__} does not follow the Head protocol (rskp_plugin.Head): missing "
            f"{', '.join(missing) or '__call__'}; int attributes num_classes and embed_dim are required too"
        )
    declared = declared_recipe_attributes(head)
    if declared:  # settings the head means to apply would be silently lost
        warnings.warn(recipe_attribute_message(head, declared), UserWarning, stacklevel=3)
    return head_traits(head)


def validate_inputs(head: Head, features: Tensor, mask: Tensor | None, labels: Tensor | None) -> tuple[Tensor, Tensor]:
    """Check a model's inputs: features (B, T, D) finite with T > 0, mask (B, T) with a real snippet per video,
    labels (B, C); returns (features, mask) with the mask made a bool tensor (all True when None)."""
    sizes = expect(features, "B T D", name="features")
    if sizes["T"] == 0:
        raise ShapeError("features have no snippets (T = 0); drop empty videos before the forward pass")
    expect_finite(features, name="features")
    mask = as_mask(mask, sizes["B"], sizes["T"], features.device)
    if not bool(mask.any(dim=1).all()):
        raise ShapeError("a video in the batch has no real snippet (its mask row is all False); drop empty videos")
    if labels is not None:
        expect(labels, "B C", name="labels", sizes={"B": sizes["B"], "C": head.num_classes})
    return features, mask


def head_losses(head: Head, main: HeadOutput, labels: Tensor, mask: Tensor, weights: LossWeights
                ) -> dict[str, Tensor]:
    """Losses of the main branch that do not depend on RSKP: the head's own terms and L_att."""
    losses = {"cls/main": head.classification_loss(main, labels, mask)}
    for name, value in head.auxiliary_loss(main, labels, mask).items():
        losses[f"aux/{name}"] = value
    beta = weights.attention_normalization
    if beta > 0 and main.attention is not None:
        losses["att_norm"] = beta * attention_normalization(main.attention, mask, ratio=weights.attention_topk_ratio)
    return losses


@torch.inference_mode()
def predict(model: nn.Module, features: Tensor, mask: Tensor | None = None) -> RSKPOutput:
    """Inference in eval mode: fused video scores (B, C) and CAS (B, T, C); the caller's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return model(features, mask)
    finally:
        model.train(was_training)


class HeadOnlyModel(nn.Module):
    """A whole model made of the head alone, with the ``Model`` interface of ``RSKPWrapper`` (the "without RSKP"
    rows of Table 6).

    Its loss is the head's classification and auxiliary losses plus beta * L_att where the head has attention
    (the same main-branch terms RSKPWrapper uses), so the comparison isolates RSKP's additions.
    """

    memory = None

    def __init__(self, head: Head, config: RSKPConfig | None = None) -> None:
        super().__init__()
        self.head = head
        self.traits = head_traits(head)
        self.config = RSKPConfig() if config is None else config
        self.weights = loss_weights(self.config.losses)

    @property
    def memory_ready(self) -> bool:
        """Always False: no memory bank without RSKP."""
        return False

    def forward(self, features: Tensor, mask: Tensor | None = None, labels: Tensor | None = None) -> RSKPOutput:
        features, mask = validate_inputs(self.head, features, mask, labels)
        main = self.head(self.head.embed(features, mask), mask)
        losses: dict[str, Tensor] = {}
        loss = None
        if labels is not None:
            losses = head_losses(self.head, main, labels, mask, self.weights)
            loss = torch.stack(list(losses.values())).sum()
        return RSKPOutput(main.video_scores, main.cas, main.attention, main, None, None, None, losses, loss,
                          main.score_cas)

    def initialize_memory(self, batches: Iterable) -> None:
        """No memory without RSKP; present so training loops treat both models alike."""

    def start_epoch(self, epoch: int, memory_batches: Any = None) -> None:
        """No epoch-dependent terms without RSKP (``memory_batches`` is never read)."""

    def memory_fill_due(self, epochs_done: int) -> bool:
        """Never: no memory bank without RSKP."""
        return False

    def branch_outputs(self, features: Tensor, mask: Tensor | None = None, labels: Tensor | None = None) -> Branches:
        """``RSKPWrapper.branch_outputs`` for the head alone: its one branch (main), no teacher."""
        return Branches(self(features, mask), None, "")

    def predict(self, features: Tensor, mask: Tensor | None = None) -> RSKPOutput:
        """Inference in eval mode: video scores (B, C) and CAS (B, T, C); the caller's mode is restored."""
        return predict(self, features, mask)
