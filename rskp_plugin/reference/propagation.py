"""Reference formulations of BiRW (paper 3.3, eq. 4-6) for tests and benchmarks; training runs
``rskp_plugin.propagation.birw_walks``.

    - ``birw_unrolled``: eq. 4-5 iterated, the definition eq. 6 is the limit of;
    - ``birw_dense``: eq. 6 with a dense T x T solve, the test and benchmark reference;
    - ``birw_official``: the official code's formulation (T x T inverse by solving against the identity, then a
      matrix product), kept for benchmarks only.

Symbols and masks as in ``rskp_plugin.propagation``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..propagation import affinity, column_normalize, finish_walk, prepare_walk


def birw_unrolled(
    features: Tensor,
    reps: Tensor,
    w: float,
    iterations: int,
    temperature: float = 5.0,
    mask: Tensor | None = None,
    *,
    reps_mask: Tensor | None = None,
    check_finite: bool = True,
) -> Tensor:
    """BiRW by iteration, eq. 4-5, with the affinity Z fixed.

    mu^(t) = w N^T F^(t-1) + (1 - w) mu^(0)    (eq. 4)
    F^(t)  = w Z mu^(t) + (1 - w) F^(0)         (eq. 5)
    It converges geometrically (rate w^2) to ``birw``.

    Args:
        features: (T, d) or (B, T, d); reps: (n, d) or (B, n, d); masks as in ``birw``.
        iterations: number of (eq. 4, eq. 5) rounds; 0 returns F^(0) (masked).

    Returns:
        F^(iterations), the shape of ``features``; padded rows are zero.
    """
    f, mu, mask, reps_mask, squeeze = prepare_walk(features, reps, w, mask, reps_mask, check_finite)
    z = affinity(f, mu, temperature=temperature, mask=mask, reps_mask=reps_mask)
    nrm = column_normalize(z)
    cur = f
    for _ in range(iterations):
        mu_t = w * torch.bmm(nrm.transpose(1, 2), cur) + (1.0 - w) * mu  # (B, n, d)
        cur = w * torch.bmm(z, mu_t) + (1.0 - w) * f  # (B, T, d)
    return finish_walk(cur, mask, squeeze)


def birw_dense(
    features: Tensor,
    reps: Tensor,
    w: float = 0.5,
    temperature: float = 5.0,
    mask: Tensor | None = None,
    *,
    reps_mask: Tensor | None = None,
    check_finite: bool = True,
) -> Tensor:
    """Eq. 6 by a dense solve of the T x T system ``(I - w^2 Z N^T) X = w Z mu + F`` (reference; O(T^3))."""
    f, mu, mask, reps_mask, squeeze = prepare_walk(features, reps, w, mask, reps_mask, check_finite)
    z = affinity(f, mu, temperature=temperature, mask=mask, reps_mask=reps_mask)
    nrm = column_normalize(z)
    eye = torch.eye(f.shape[1], dtype=f.dtype, device=f.device)
    system = eye - (w * w) * torch.bmm(z, nrm.transpose(1, 2))  # (B, T, T)
    out = (1.0 - w) * torch.linalg.solve(system, w * torch.bmm(z, mu) + f)
    return finish_walk(out, mask, squeeze)


def birw_official(
    features: Tensor, reps: Tensor, w: float = 0.5, temperature: float = 5.0, mask: Tensor | None = None
) -> Tensor:
    """Eq. 6 as the official code computes it: the T x T inverse by solving against the identity, then a product.

    Benchmark reference only (O(T^3) time, O(T^2) memory).
    """
    f, mu, mask, _, squeeze = prepare_walk(features, reps, w, mask, None, False)
    z = affinity(f, mu, temperature=temperature, mask=mask)
    nrm = column_normalize(z)
    eye = torch.eye(f.shape[1], dtype=f.dtype, device=f.device).expand(f.shape[0], -1, -1)
    inverse = torch.linalg.solve(eye - (w * w) * torch.bmm(z, nrm.transpose(1, 2)), eye)  # (B, T, T)
    out = (1.0 - w) * torch.bmm(inverse, f + w * torch.bmm(z, mu))
    return finish_walk(out, mask, squeeze)
