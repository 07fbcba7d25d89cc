"""The distillation teacher: the pseudo-labels T^f the main branch distils (paper 3.4, eq. 7), formed in this one
place for training (``RSKPWrapper.forward``) and diagnostics (``branch_outputs``) alike.

Symbols: B batch, T snippets, K TCAM columns (C or C+1).
"""

from __future__ import annotations

from torch import Tensor

from ..protocols import HeadOutput
from .losses import distillation, teacher_confidence


class Teacher:
    """T^f and the distillation term, from plain values (``rskp.teacher``, ``rskp.fusion``,
    ``rskp.losses.distillation_temperature``).

    Args:
        source: "ensemble" (main fused in, weight ``main_weight``) or "propagated" (the propagated branches alone,
            official).
        weighting: "confidence" (each snippet by the teacher's confidence) or "uniform" (official).
        distill: whether the main branch distils T^f at all.
        intra_weight: w of P = w T^a + (1 - w) T^e (``fusion.pseudo_label_intra``, 0.8).
        main_weight: t of T^f = t T + (1 - t) P (``fusion.test_main``, 0.6).
        temperature: tau of the distillation (``losses.distillation_temperature``).
    """

    def __init__(self, source: str = "ensemble", weighting: str = "confidence", distill: bool = True,
                 intra_weight: float = 0.8, main_weight: float = 0.6, temperature: float = 1.0) -> None:
        self.source, self.weighting, self.distill = source, weighting, distill
        self.intra_weight, self.main_weight, self.temperature = intra_weight, main_weight, temperature

    @property
    def official(self) -> bool:
        """Whether T^f is the propagated branches alone (so the intra branch itself before the memory is ready)."""
        return self.source == "propagated"

    def pseudo_labels(self, main: HeadOutput, intra: HeadOutput, inter: HeadOutput | None) -> Tensor:
        """T^f of eq. 7, detached TCAM logits (B, T, K).

        Propagated part P = w T^a + (1 - w) T^e (T^a alone before the memory bank is ready, and under
        ``propagation.inter_fusion: early``, where ``intra`` is the one walk over [mu^a; mu^e]). ``ensemble``:
        T^f = t T + (1 - t) P, the main branch's TCAM T fused in with the test-time weight t; ``propagated``:
        T^f = P. Shapes: every branch's ``tcam`` (B, T, K) -> (B, T, K).
        """
        teacher = intra.tcam
        if inter is not None:
            w = self.intra_weight
            teacher = w * intra.tcam + (1.0 - w) * inter.tcam
        if self.source == "ensemble":
            teacher = self.main_weight * main.tcam + (1.0 - self.main_weight) * teacher
        return teacher.detach()

    def loss(self, main: HeadOutput, teacher: Tensor, mask: Tensor) -> Tensor:
        """L_kd of eq. 7, unweighted: the main TCAM (B, T, K) against T^f (B, T, K) over real snippets (B, T), each
        snippet weighted by the teacher's confidence where ``weighting`` says so."""
        tau = self.temperature
        weights = teacher_confidence(teacher, temperature=tau) if self.weighting == "confidence" else None
        return distillation(main.tcam, teacher, mask, temperature=tau, weights=weights)
