"""RSKP's own loss terms (eq. 7 and the attention normalisation of eq. 8), all mask-aware; their weights as plain
values (``LossWeights``); what a registered loss term receives (``TermInputs``, ``registered_terms``)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..config import LossConfig
from ..functional import masked_mean, masked_topk_mean, topk_counts
from ..protocols import HeadOutput, Propagated
from .registry import LOSS_TERMS, LossTerm


class LossWeights(NamedTuple):
    """The weights of eq. 8 and RSKP's other terms as plain values, read once from ``rskp.losses``
    (``loss_weights``); the fields are ``LossConfig``'s (docs/config.md), the registered terms resolved."""

    distillation: float
    distillation_after_warmup: float
    distillation_temperature: float
    attention_normalization: float
    attention_topk_ratio: int
    inter_classification: float
    intra_classification: float
    rampup_epochs: int | None
    feature_loss: str
    feature_weight: float
    terms: tuple[tuple[str, LossTerm, float], ...]  # (name, term, weight) of each registered term with weight > 0


def loss_weights(config: LossConfig) -> LossWeights:
    """``config`` as plain values, its registered terms looked up (``method.registry.LOSS_TERMS``)."""
    values = {name: getattr(config, name) for name in LossWeights._fields if name != "terms"}
    terms = tuple((name, LOSS_TERMS[name], weight) for name, weight in config.terms.items() if weight > 0)
    return LossWeights(**values, terms=terms)


class TermInputs(NamedTuple):
    """What a registered loss term receives: the batch and every branch of one training forward.

    Attributes:
        head: the head (its ``classify``, ``classification_loss``, ...).
        features: (B, T, d) F, the head's embedding.
        mask: (B, T) bool, True on real snippets.
        labels: (B, C) multi-hot video labels.
        main, intra: the head on F and on the intra walk's F^a (``HeadOutput``).
        inter: the head on the inter walk's F^e once the memory bank is used, else None.
        walked: the walks' outputs, factored (``Propagated``; ``.dense()`` gives F^a, F^e); empty when
            ``rskp.propagation.method`` walks scores.
    """

    head: Any
    features: Tensor
    mask: Tensor
    labels: Tensor
    main: HeadOutput
    intra: HeadOutput
    inter: HeadOutput | None
    walked: list[Propagated]


def registered_terms(weights: LossWeights, inputs: TermInputs, ramp: float) -> dict[str, Tensor]:
    """Each registered term with weight > 0, times its weight and the ramp-up ``ramp``, by name."""
    return {name: ramp * weight * term(inputs) for name, term, weight in weights.terms}


def distillation(
    student: Tensor, teacher: Tensor, mask: Tensor, *, temperature: float = 0.2, weights: Tensor | None = None
) -> Tensor:
    """Pseudo-label distillation, eq. 7: L_kd = -1/l sum_i T^f(i) log T(i), per video, averaged over the batch.

    The official code divides both logits by a temperature tau = 0.2 before the softmax (the paper's eq. 7 has
    none: pass ``temperature=1.0`` for it) and detaches the teacher; there is no tau^2 factor.

    Args:
        student: (B, T, K) TCAM logits of the main branch (K = C or C+1).
        teacher: (B, T, K) fused TCAM logits T^f of the propagated branches (detached here).
        mask: (B, T) bool; padded snippets take no part.
        temperature: tau.
        weights: (B, T) per-snippet weights (detached), or None for the official uniform 1/l.

    Returns:
        Scalar loss.
    """
    target = torch.softmax(teacher.detach() / temperature, dim=-1)
    # 0 * log 0 = 0: a teacher that excludes a class (probability exactly 0) must not turn -inf logits into NaN
    log_student = torch.log_softmax(student / temperature, dim=-1)
    per_snippet = -torch.where(target > 0, target * log_student, torch.zeros((), dtype=log_student.dtype,
                                                                              device=log_student.device)).sum(-1)
    if weights is not None:
        per_snippet = per_snippet * weights.detach()
    return masked_mean(per_snippet, mask).mean()


def teacher_confidence(teacher: Tensor, *, temperature: float = 0.2) -> Tensor:
    """1 - H(softmax(teacher / tau)) / log K per snippet: 1 for a one-hot teacher, 0 for a uniform one.

    Shapes: teacher (B, T, K) logits (entries of -inf take no part) -> (B, T) in [0, 1].
    """
    logp = torch.log_softmax(teacher.detach() / temperature, dim=-1)
    p = logp.exp()
    entropy = -torch.where(p > 0, p * logp, torch.zeros((), dtype=p.dtype, device=p.device)).sum(-1)
    k = torch.isfinite(teacher).sum(-1).clamp(min=2).to(p.dtype)
    return (1.0 - entropy / k.log()).clamp(0.0, 1.0)


def rampup_weight(epoch: int, epochs: int) -> float:
    """exp(-5 (1 - epoch / epochs)^2) for epoch < epochs, else 1 (0-based epochs; ``epochs`` = 0: always 1).

    The sigmoid-shaped ramp-up of temporal ensembling (Laine and Aila, ICLR 2017): 0.007 in the first epoch,
    0.5 at 63 % of the way, 1 from ``epochs`` on.
    """
    if epochs <= 0 or epoch >= epochs:
        return 1.0
    return math.exp(-5.0 * (1.0 - max(epoch, 0) / epochs) ** 2)


def attention_normalization(attention: Tensor, mask: Tensor, *, ratio: int = 8) -> Tensor:
    """Attention normalisation (L_att of eq. 8): mean of the k smallest minus mean of the k largest attention.

    k = max(len // ratio, 1) per video (official: T // 8).

    Args:
        attention: (B, T) foreground attention in [0, 1].
        mask: (B, T) bool.
        ratio: the divisor giving k.

    Returns:
        Scalar loss, averaged over the batch.
    """
    k = topk_counts(mask, ratio)
    low = masked_topk_mean(attention, mask, k, largest=False)
    high = masked_topk_mean(attention, mask, k, largest=True)
    return (low - high).mean()


def feature_distance(features: Tensor, propagated: Tensor, mask: Tensor, *, kind: str = "l1") -> Tensor:
    """The feature L1/L2 losses of supplement Table 3: L_l1 = ||F - F^a||_1, L_l2 = ||F - F^a||_2^2, as the mean
    over a video's real snippets and channels of |F - F^a| ("l1") or (F - F^a)^2 ("l2"), averaged over the batch.

    Args:
        features: (B, T, d) F.
        propagated: (B, T, d) F^a, the intra walk's output.
        mask: (B, T) bool; padded snippets take no part.
        kind: "l1" or "l2".

    Returns:
        Scalar loss; gradients reach both F and F^a.
    """
    if kind not in ("l1", "l2"):
        raise ValueError(f'feature loss kind must be "l1" or "l2", got {kind!r}')
    diff = features - propagated
    per_snippet = (diff.abs() if kind == "l1" else diff * diff).mean(dim=-1)  # (B, T)
    return masked_mean(per_snippet, mask).mean()
