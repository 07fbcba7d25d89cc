"""Reference EM attention (paper 3.1, eq. 2-3) with autograd: what ``EMSummarizer``'s hand-written backward must
match (tests)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..method.propagation import affinity_parts, column_normalize


def em_step(
    features: Tensor,
    means: Tensor,
    *,
    temperature: float,
    mask: Tensor | None = None,
    feature_norms: Tensor | None = None,
) -> Tensor:
    """One EM-attention iteration: E step (eq. 2) then M step (eq. 3).

    Z = softmax_k(lambda Norm_2(F) Norm_2(mu)^T)   (eq. 2)
    mu = Norm_1(Z)^T F                            (eq. 3, a convex combination of the real snippets)

    Args:
        features: (B, T, d) snippet features F (not normalised: the means live in the same space as F).
        means: (B, n, d) current means mu^(t-1).
        temperature: lambda.
        mask: (B, T) bool; padded snippets take no part.
        feature_norms: (B, T) |f_i|, when the caller computed them once for several iterations.

    Returns:
        (B, n, d) updated means mu^(t).
    """
    z = affinity_parts(features, means, temperature, mask, None, feature_norms)[-1]  # (B, T, n)
    return torch.bmm(column_normalize(z).transpose(1, 2), features)  # (B, n, d)
