"""Representative snippet summarisation by EM attention (paper 3.1, eq. 2-3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._shapes import as_mask, expect
from .propagation import _affinity_parts, column_normalize


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
    z = _affinity_parts(features, means, temperature, mask, None, feature_norms)[-1]  # (B, T, n)
    return torch.bmm(column_normalize(z).transpose(1, 2), features)  # (B, n, d)


class EMSummarizer(nn.Module):
    """EM attention with learnable initial means mu^(0) (updated by back-propagation, as the paper does).

    Args:
        dim: embedding size d.
        num_reps: n, the number of representative snippets per video (8).
        iterations: EM iterations (2).
        temperature: lambda of eq. 2 (5.0).
        init: "orthogonal" — the paper's (semi-)orthogonal mu^(0) — or "xavier", the official code's
            Xavier-uniform initialisation.
    """

    def __init__(
        self, dim: int, num_reps: int = 8, iterations: int = 2, temperature: float = 5.0, init: str = "orthogonal"
    ) -> None:
        super().__init__()
        if num_reps < 1 or iterations < 1 or dim < 1:
            raise ValueError(f"dim, num_reps and iterations must be >= 1, got {dim}, {num_reps}, {iterations}")
        if init not in ("orthogonal", "xavier"):
            raise ValueError(f'init must be "orthogonal" (paper) or "xavier" (official code), got {init!r}')
        self.dim, self.num_reps, self.iterations, self.temperature, self.init = (
            dim, num_reps, iterations, temperature, init
        )
        self.initial_means = nn.Parameter(torch.empty(num_reps, dim))  # mu^(0), (n, d)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == "orthogonal":
            nn.init.orthogonal_(self.initial_means)
        else:
            nn.init.xavier_uniform_(self.initial_means)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """Summarise each video: features (B, T, d), mask (B, T) bool -> representative snippets (B, n, d)."""
        sizes = expect(features, "B T d", name="features", sizes={"d": self.dim})
        mask = as_mask(mask, sizes["B"], sizes["T"], features.device)
        means = self.initial_means.to(features.dtype).expand(sizes["B"], -1, -1)  # (B, n, d)
        norms = features.norm(dim=-1)  # (B, T), shared by the iterations (one norm backward instead of one each)
        for _ in range(self.iterations):
            means = em_step(features, means, temperature=self.temperature, mask=mask, feature_norms=norms)
        return means

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_reps={self.num_reps}, iterations={self.iterations}, " \
               f"temperature={self.temperature}, init={self.init!r}"
