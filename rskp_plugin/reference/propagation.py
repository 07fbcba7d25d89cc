"""Reference formulations of BiRW (paper 3.3, eq. 4-6) for tests and benchmarks; training runs
``rskp_plugin.method.propagation.birw_walks``.

    - ``birw_unrolled``: eq. 4-5 iterated, the definition eq. 6 is the limit of;
    - ``birw_dense``: eq. 6 with a dense T x T solve, the test and benchmark reference;
    - ``birw_official``: the official code's formulation (T x T inverse by solving against the identity, then a
      matrix product), kept for benchmarks only;
    - ``birw_lu``: eq. 6 in Woodbury form with the non-symmetric n x n system I - w^2 N^T Z solved by LU and several
      passes over F (what ``birw`` computed before its SPD / Cholesky form), kept for benchmarks only.

Symbols and masks as in ``rskp_plugin.method.propagation``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..method.birw_kernels import block_mask
from ..method.propagation import EPS, affinity, affinity_parts, column_normalize, finish_walk, prepare_walk


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


def birw_lu(
    features: Tensor, reps: Tensor, w: float = 0.5, temperature: float = 5.0, mask: Tensor | None = None,
    *, reps_mask: Tensor | None = None, check_finite: bool = True,
) -> Tensor:
    """Eq. 6 as ``birw`` computed it before the SPD form: K = I - w^2 N^T Z (n x n) solved by LU in the forward and
    again (transposed) in the backward, F read about five times forward and seven times backward. Benchmark only."""
    f, mu, mask, reps_mask, squeeze = prepare_walk(features, reps, w, mask, reps_mask, check_finite)
    out = _WoodburyLU.apply(f, mu, mask, reps_mask, float(w), float(temperature))
    return out[0] if squeeze else out


def _lu_factors_forward(
    f: Tensor, mu: Tensor, mask: Tensor | None, reps_mask: Tensor | None, w: float, lam: float,
    groups: tuple[int, ...] | None = None,
):
    """Forward of eq. 6 up to its factors Z (B, T, n) and M (B, n, d), with F* = (1 - w) F + Z M on real rows;
    returns (z, m, saved) where ``saved`` is what ``_factors_backward`` needs. With ``groups``, several walks
    (consecutive sets of representatives) share the products with F; their n x n systems stay separate (A is
    block-diagonal), so each group's columns of Z and rows of M are its own walk's."""
    fnorm, inv, mnorm, u, p, z = affinity_parts(f, mu, lam, mask, reps_mask, groups=groups)
    colsum = z.sum(dim=1)  # (B, n)
    scale = colsum.clamp(min=EPS)
    nrm = z / scale[:, None, :]  # (B, T, n)
    nrm_t = nrm.transpose(1, 2)
    a = torch.bmm(nrm_t, z)  # (B, n, n)
    block = block_mask(groups, mu.shape[1], a)
    if block is not None:
        a = a * block
    eye = torch.eye(mu.shape[1], dtype=f.dtype, device=f.device)
    k = eye - (w * w) * a
    rhs = torch.bmm(nrm_t, f) + w * torch.bmm(a, mu)  # (B, n, d)
    sol = torch.linalg.solve(k, rhs)
    m = (1.0 - w) * (w * mu + (w * w) * sol)  # (B, n, d)
    return z, m, (f, mu, fnorm, inv, mnorm, u, p, z, colsum, scale, nrm, a, k, sol)


def _lu_factors_backward(
    saved, dz: Tensor, dm: Tensor, w: float, lam: float, df: Tensor, groups: tuple[int, ...] | None = None
) -> tuple[Tensor, Tensor]:
    """Backward of ``_factors_forward`` from the gradients of its outputs Z (dz) and M (dm); adds the gradient
    of F into ``df`` (B, T, d, modified in place) and returns (df, dmu)."""
    f, mu, fnorm, inv, mnorm, u, p, z, colsum, scale, nrm, a, k, sol = saved
    dmu = ((1.0 - w) * w) * dm
    # M = (1 - w)(w mu + w^2 sol),  sol = K^-1 rhs,  K = I - w^2 A
    drhs = torch.linalg.solve(k.transpose(1, 2), ((1.0 - w) * w * w) * dm)  # (B, n, d)
    da = (w * w) * torch.bmm(drhs, sol.transpose(1, 2)) + w * torch.bmm(drhs, mu.transpose(1, 2))
    block = block_mask(groups, mu.shape[1], da)
    if block is not None:
        da = da * block  # A = (N^T Z) * block
    dmu = dmu + w * torch.bmm(a.transpose(1, 2), drhs)  # rhs = N^T F + w A mu
    # N^T F and A = N^T Z
    dn = torch.bmm(f, drhs.transpose(1, 2)) + torch.bmm(z, da.transpose(1, 2))  # (B, T, n)
    dz = dz + torch.bmm(nrm, da)
    # N = Z / max(colsum, eps)
    dscale = -(dn * z).sum(dim=1) / (scale * scale) * (colsum > EPS).to(z.dtype)  # (B, n)
    dz = dz + dn / scale[:, None, :] + dscale[:, None, :]
    # Z = softmax(lambda r P) on real rows / real representatives (z = 0 elsewhere, so dl = 0 there)
    if groups is None or len(groups) == 1:
        dl = z * (dz - (dz * z).sum(dim=-1, keepdim=True))
    else:  # one softmax per group
        dzz = [part.sum(dim=-1, keepdim=True).expand(-1, -1, g) for part, g in zip((dz * z).split(groups, -1), groups)]
        dl = z * (dz - torch.cat(dzz, dim=-1))
    dp = (lam * inv)[..., None] * dl  # (B, T, n)
    dinv = lam * (dl * p).sum(dim=-1)  # (B, T)
    du = torch.bmm(dp.transpose(1, 2), f)  # (B, n, d)
    # r = 1 / (|f| + eps): dr/df = -r^2 f / |f|
    coef = -dinv * inv * inv / fnorm.clamp(min=torch.finfo(f.dtype).tiny)  # (B, T)
    df.addcmul_(coef[..., None], f)
    df.baddbmm_(torch.cat([nrm, dp], dim=2), torch.cat([drhs, u], dim=1))  # N dG + dP U in one product
    # U = mu / (|mu| + eps)
    denom = mnorm + EPS
    radial = (mu * du).sum(dim=-1, keepdim=True) / (mnorm.clamp(min=torch.finfo(f.dtype).tiny) * denom * denom)
    radial = torch.where(mnorm > 0, radial, 0.0)  # mu = 0 (a missing representative): 0 / 0 -> 0
    dmu = dmu + du / denom - mu * radial
    return df, dmu


class _WoodburyLU(torch.autograd.Function):
    """Eq. 6 in Woodbury form with an analytic backward, the n x n system K = I - w^2 N^T Z solved by LU
    (``propagation.birw`` before its SPD form; kept as the benchmark's "old" column).

    Forward, per video (shapes without the batch axis):
        r = 1 / (|f_i| + eps) (T,),  U = Norm_2(mu) (n, d),  P = F U^T (T, n),  Z = softmax(lambda r P) (T, n)
        N = Z / colsum(Z),  A = N^T Z (n, n),  rhs = N^T F + w A mu (n, d),  sol = (I - w^2 A)^-1 rhs
        M = (1 - w)(w mu + w^2 sol) (n, d),  F* = (1 - w) F + Z M
    which is the regrouped closed form: N^T b = N^T F + w (N^T Z) mu and F* = (1 - w)(b + w^2 Z sol).
    Autograd through these steps would revisit the (T, d) tensors a dozen times (the norm backward alone costs
    several passes); the backward below visits them about seven times.
    """

    @staticmethod
    def forward(ctx, f, mu, mask, reps_mask, w, lam):  # type: ignore[override]
        z, m, saved = _lu_factors_forward(f, mu, mask, reps_mask, w, lam)
        out = torch.baddbmm(f, z, m, beta=1.0 - w)  # (B, T, d)
        if mask is not None:
            out = out.mul_(mask[..., None].to(out.dtype))  # padded rows of F* are zero
        ctx.save_for_backward(mask, m, *saved)
        ctx.w, ctx.lam = w, lam
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, go):  # type: ignore[override]
        mask, m, *saved = ctx.saved_tensors
        z = saved[7]
        # F* = (1 - w) F + Z M
        dz = torch.bmm(go, m.transpose(1, 2))  # (B, T, n); padded rows die in the softmax backward (z = 0)
        dm = torch.bmm(z.transpose(1, 2), go)  # (B, n, d)
        scale_go = (1.0 - ctx.w) if mask is None else (1.0 - ctx.w) * mask[..., None].to(go.dtype)
        df, dmu = _lu_factors_backward(saved, dz, dm, ctx.w, ctx.lam, go * scale_go)
        return df, dmu, None, None, None, None


