"""Bipartite random walk (BiRW, paper 3.3): propagate representative snippets to every snippet of a video.

Symbols: B batch, T snippets, n representative snippets, d embedding size. ``mask`` (B, T) marks real snippets,
``reps_mask`` (B, n) marks real representatives (memory-bank retrievals pad videos with fewer classes).

Three formulations of the same operator, all mask-aware:
    - ``birw``: eq. 6 in Woodbury form, O(T n d), the production path (no T x T matrix is ever formed);
    - ``birw_unrolled``: eq. 4-5 iterated, the definition eq. 6 is the limit of;
    - ``birw_dense``: eq. 6 with a dense T x T solve, the test and benchmark reference;
    - ``birw_official``: the official code's formulation (T x T inverse by solving against the identity, then a
      matrix product), kept for benchmarks only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._shapes import expect, expect_finite
from .errors import ShapeError

_EPS = 1e-9  # added to norms and column sums, as the official code does


def unit(x: Tensor, eps: float = _EPS) -> Tensor:
    """Row-wise l2 normalisation ``Norm_2`` (eq. 2): (..., d) -> (..., d)."""
    return x / (x.norm(dim=-1, keepdim=True) + eps)


def affinity(
    features: Tensor, reps: Tensor, *, temperature: float, mask: Tensor | None = None, reps_mask: Tensor | None = None
) -> Tensor:
    """Snippet-to-representative affinity Z, eq. 2: softmax over the n representatives of lambda * cos(f_i, mu_k).

    Args:
        features: (B, T, d) snippet features F.
        reps: (B, n, d) representative snippets mu.
        temperature: lambda.
        mask: (B, T) bool; padded snippets get all-zero rows.
        reps_mask: (B, n) bool; padded representatives get all-zero columns (excluded from the softmax).

    Returns:
        Z: (B, T, n), each real row sums to 1 over the real representatives.
    """
    logits = temperature * torch.einsum("btd,bnd->btn", unit(features), unit(reps))  # (B, T, n)
    if reps_mask is not None:
        logits = logits.masked_fill(~reps_mask[:, None, :], float("-inf"))
    z = torch.softmax(logits, dim=-1)
    if reps_mask is not None:
        z = z.nan_to_num(0.0)  # a video with no real representative: Z = 0, so F* = (1 - w) F
    if mask is not None:
        z = z * mask[..., None].to(z.dtype)
    return z


def column_normalize(z: Tensor, eps: float = _EPS) -> Tensor:
    """Column-wise l1 normalisation ``Norm_1`` over time (eq. 3): Z (B, T, n) -> N (B, T, n), columns sum to 1.

    The official code adds 1e-9 to the column sums; clamping them at 1e-9 instead keeps every column summing to
    exactly 1 (the paper's Norm_1, so EM means are true convex combinations) and an all-zero column at zero.
    """
    return z / z.sum(dim=1, keepdim=True).clamp(min=eps)


def _prepare(
    features: Tensor, reps: Tensor, w: float, mask: Tensor | None, reps_mask: Tensor | None, check_finite: bool
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, bool]:
    """Validate inputs, add a batch axis to single videos; returns (F, mu, mask, reps_mask, squeezed)."""
    if not 0.0 <= float(w) < 1.0:
        raise ShapeError(f"propagation weight w must lie in [0, 1) for the walk to converge, got {w}")
    squeeze = features.dim() == 2
    if squeeze:
        sizes = expect(features, "T d", name="features")
        expect(reps, "n d", name="reps", sizes=sizes)
        features, reps = features[None], reps[None]
        if mask is not None:
            expect(mask, "T", name="mask", sizes=sizes)
            mask = mask[None]
        if reps_mask is not None:
            expect(reps_mask, "n", name="reps_mask", sizes=sizes)
            reps_mask = reps_mask[None]
    else:
        sizes = expect(features, "B T d", name="features")
        expect(reps, "B n d", name="reps", sizes=sizes)
        if mask is not None:
            expect(mask, "B T", name="mask", sizes=sizes)
        if reps_mask is not None:
            expect(reps_mask, "B n", name="reps_mask", sizes=sizes)
    for name, m in (("mask", mask), ("reps_mask", reps_mask)):
        if m is not None and m.dtype != torch.bool:
            raise ShapeError(f"{name} must be a bool tensor (True = real, False = padding), got {m.dtype}")
    if check_finite:
        expect_finite(features, name="features")
        expect_finite(reps, name="reps")
    return features, reps, mask, reps_mask, squeeze


def _finish(out: Tensor, mask: Tensor | None, squeeze: bool) -> Tensor:
    if mask is not None:
        out = out * mask[..., None].to(out.dtype)
    return out[0] if squeeze else out


def birw(
    features: Tensor,
    reps: Tensor,
    w: float = 0.5,
    temperature: float = 5.0,
    mask: Tensor | None = None,
    *,
    reps_mask: Tensor | None = None,
    check_finite: bool = True,
) -> Tensor:
    """BiRW closed form, eq. 6, without any T x T matrix.

    F* = (1 - w) (I_T - w^2 Z N^T)^-1 (w Z mu + F) with N = Norm_1(Z). By the Woodbury identity
    (I_T - w^2 Z N^T)^-1 = I_T + w^2 Z (I_n - w^2 N^T Z)^-1 N^T, so with b = w Z mu + F only an n x n system is
    solved: F* = (1 - w) (b + w^2 Z (I_n - w^2 N^T Z)^-1 N^T b). Cost O(T n d + n^3) per video.

    Args:
        features: (T, d) or (B, T, d) snippet features F.
        reps: (n, d) or (B, n, d) representative snippets mu (online mu^a or memory mu^e).
        w: propagation weight in [0, 1).
        temperature: lambda of the affinity (eq. 2).
        mask: (T,) or (B, T) bool, True on real snippets.
        reps_mask: (n,) or (B, n) bool, True on real representatives.
        check_finite: raise on NaN/Inf inputs (one reduction; callers that validated already may skip it).

    Returns:
        F*: the shape of ``features``; padded rows are zero.
    """
    f, mu, mask, reps_mask, squeeze = _prepare(features, reps, w, mask, reps_mask, check_finite)
    z = affinity(f, mu, temperature=temperature, mask=mask, reps_mask=reps_mask)  # (B, T, n)
    nrm = column_normalize(z)  # (B, T, n)
    b = w * torch.bmm(z, mu) + f  # (B, T, d)
    n = mu.shape[1]
    eye = torch.eye(n, dtype=f.dtype, device=f.device)
    small = eye - (w * w) * torch.bmm(nrm.transpose(1, 2), z)  # (B, n, n): I_n - w^2 N^T Z
    rhs = torch.bmm(nrm.transpose(1, 2), b)  # (B, n, d): N^T b
    sol = torch.linalg.solve(small, rhs)  # (B, n, d)
    out = (1.0 - w) * (b + (w * w) * torch.bmm(z, sol))  # (B, T, d)
    return _finish(out, mask, squeeze)


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
    f, mu, mask, reps_mask, squeeze = _prepare(features, reps, w, mask, reps_mask, check_finite)
    z = affinity(f, mu, temperature=temperature, mask=mask, reps_mask=reps_mask)
    nrm = column_normalize(z)
    cur = f
    for _ in range(iterations):
        mu_t = w * torch.bmm(nrm.transpose(1, 2), cur) + (1.0 - w) * mu  # (B, n, d)
        cur = w * torch.bmm(z, mu_t) + (1.0 - w) * f  # (B, T, d)
    return _finish(cur, mask, squeeze)


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
    f, mu, mask, reps_mask, squeeze = _prepare(features, reps, w, mask, reps_mask, check_finite)
    z = affinity(f, mu, temperature=temperature, mask=mask, reps_mask=reps_mask)
    nrm = column_normalize(z)
    eye = torch.eye(f.shape[1], dtype=f.dtype, device=f.device)
    system = eye - (w * w) * torch.bmm(z, nrm.transpose(1, 2))  # (B, T, T)
    out = (1.0 - w) * torch.linalg.solve(system, w * torch.bmm(z, mu) + f)
    return _finish(out, mask, squeeze)


def birw_official(
    features: Tensor, reps: Tensor, w: float = 0.5, temperature: float = 5.0, mask: Tensor | None = None
) -> Tensor:
    """Eq. 6 as the official code computes it: the T x T inverse by solving against the identity, then a product.

    Benchmark reference only (O(T^3) time, O(T^2) memory).
    """
    f, mu, mask, _, squeeze = _prepare(features, reps, w, mask, None, False)
    z = affinity(f, mu, temperature=temperature, mask=mask)
    nrm = column_normalize(z)
    eye = torch.eye(f.shape[1], dtype=f.dtype, device=f.device).expand(f.shape[0], -1, -1)
    inverse = torch.linalg.solve(eye - (w * w) * torch.bmm(z, nrm.transpose(1, 2)), eye)  # (B, T, T)
    out = (1.0 - w) * torch.bmm(inverse, f + w * torch.bmm(z, mu))
    return _finish(out, mask, squeeze)
