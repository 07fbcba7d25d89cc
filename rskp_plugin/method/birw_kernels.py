"""The kernels behind ``rskp_plugin.method.propagation``: eq. 2 row by row and eq. 6 in Woodbury form, with analytic
backwards, streaming F (B, T, d) in cache-sized blocks and solving only the n x n capacitance system by Cholesky.

``propagation.birw`` and ``propagation.birw_walks`` validate their inputs and call ``WoodburyBiRW`` and
``BiRWFactors``; the reference formulations (``rskp_plugin.reference.propagation``) share ``block_mask``.
Symbols: B batch, T snippets, n representative snippets, d embedding size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..shapes import expect_finite

EPS = 1e-9  # added to norms and column sums, as the official code does


def affinity_rows(
    features: Tensor, u: Tensor, temperature: float, mask: Tensor | None, reps_mask: Tensor | None,
    groups: tuple[int, ...] | None, fnorm: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Eq. 2 for a run of snippets: Z = softmax(lambda r P), r = 1 / (|f_i| + eps), P = F U^T.

    Each row depends on its own snippet only, so the streaming passes call this block by block.

    Args:
        features: (B, t, d) F (a block of rows); u: (B, n, d) U = Norm_2(mu); temperature: lambda;
        mask: (B, t) bool or None; reps_mask: (B, n) bool or None; groups: sizes of separately normalised sets of
        representatives, or None; fnorm: (B, t) |f_i| when known.

    Returns:
        |f_i| (B, t), r (B, t), P (B, t, n) and Z (B, t, n).
    """
    # lambda * cos without materialising Norm_2(F): scale the (B, t, n) products by 1 / |f_i| instead
    fnorm = features.norm(dim=-1) if fnorm is None else fnorm  # (B, t)
    inv = 1.0 / (fnorm + EPS)
    p = torch.bmm(features, u.transpose(1, 2))  # (B, t, n)
    logits = (temperature * inv)[..., None] * p
    if reps_mask is not None:
        logits = logits.masked_fill(~reps_mask[:, None, :], float("-inf"))
    if groups is None or len(groups) == 1:
        z = torch.softmax(logits, dim=-1)
    else:
        z = torch.cat([torch.softmax(part, dim=-1) for part in logits.split(list(groups), dim=-1)], dim=-1)
    if reps_mask is not None:
        z = z.nan_to_num(0.0)  # a video with no real representative: Z = 0, so F* = (1 - w) F
    if mask is not None:
        z = z * mask[..., None].to(z.dtype)
    return fnorm, inv, p, z


def affinity_rows_backward(
    z: Tensor, p: Tensor, inv: Tensor, dz: Tensor, temperature: float, groups: tuple[int, ...] | None
) -> tuple[Tensor, Tensor]:
    """Backward of eq. 2 (``affinity_rows``) to P and r for a run of snippets.

    Z = softmax(lambda r P) on real rows and representatives (Z = 0 elsewhere, so the gradient vanishes there).

    Args:
        z, p: (B, t, n) the forward's Z and P; inv: (B, t) r; dz: (B, t, n) dL/dZ; temperature: lambda;
        groups: as in the forward.

    Returns:
        dP (B, t, n) and dr (B, t).
    """
    if groups is None or len(groups) == 1:
        dl = z * (dz - (dz * z).sum(dim=-1, keepdim=True))
    else:  # one softmax per group
        dzz = [part.sum(dim=-1, keepdim=True).expand(-1, -1, g) for part, g in zip((dz * z).split(groups, -1), groups)]
        dl = z * (dz - torch.cat(dzz, dim=-1))
    return (temperature * inv)[..., None] * dl, temperature * (dl * p).sum(dim=-1)


def block_mask(groups: tuple[int, ...] | None, n: int, like: Tensor) -> Tensor | None:
    """(n, n) 0/1 block-diagonal mask of the groups (None for one group): walks do not mix their representatives."""
    if groups is None or len(groups) == 1:
        return None
    return torch.block_diag(*[torch.ones(g, g, dtype=like.dtype, device=like.device) for g in groups])


#: Bytes of F per streaming block on the CPU: a block is read from memory once and reused from cache; a block has
#: at least ``CHUNK_ROWS`` snippets (fewer, longer Python steps). 8 MiB measured best or level with 2-32 MiB at
#: T = 20,000 and 100,000, d = 2048 on a shared 2-core machine (benchmarks/RESULTS.md).
CHUNK_BYTES = 1 << 23
CHUNK_ROWS = 64


def _blocks(f: Tensor) -> list[tuple[slice, slice]]:
    """(videos, snippets) blocks of F (B, T, d) that the streaming passes visit in turn, each a contiguous view of
    about ``CHUNK_BYTES`` (several short videos together, or a run of one long video's rows). One block, the whole
    tensor, on accelerators (their memory is fast, their kernel launches are not), when F is small or strided."""
    b, t, d = f.shape
    row = max(d * f.element_size(), 1)
    if f.device.type != "cpu" or b * t * row <= 2 * CHUNK_BYTES or not f.is_contiguous():
        return [(slice(None), slice(None))]
    if t * row <= CHUNK_BYTES:
        per = max(1, CHUNK_BYTES // (t * row))
        return [(slice(i, min(i + per, b)), slice(None)) for i in range(0, b, per)]
    rows = max(CHUNK_ROWS, CHUNK_BYTES // row)
    return [(slice(i, i + 1), slice(s, min(s + rows, t))) for i in range(b) for s in range(0, t, rows)]


def _capacitance_factor(gram: Tensor, scale: Tensor, w: float) -> Tensor:
    """Cholesky factor of the Woodbury capacitance of eq. 6, C = D - w^2 Z^T Z.

    With N = Z D^-1 (D = diag(max(colsum Z, eps)), eq. 3) the n x n system of eq. 6 is K = I - w^2 N^T Z = D^-1 C.
    C is symmetric, and positive definite: D^-1/2 Z^T Z D^-1/2 has spectral radius <= 1 (Z is row-(sub)stochastic,
    so S = Z D^-1 Z^T is the doubly (sub)stochastic anchor-graph operator), hence the eigenvalues of D^-1/2 C D^-1/2
    lie in [1 - w^2, 1]. One factor serves the forward solve and the backward's transposed solve.

    Args:
        gram: (B, n, n) G = Z^T Z (block-diagonal for several walks).
        scale: (B, n) D's diagonal.
        w: propagation weight.

    Returns:
        (B, n, n) lower-triangular L with L L^T = C.
    """
    cap = torch.diag_embed(scale) - (w * w) * gram
    return torch.linalg.cholesky_ex(cap)[0]  # SPD by construction: no error check (it would synchronise a GPU)


def _walk_factor(zf: Tensor, gram: Tensor, mu: Tensor, chol: Tensor, w: float) -> tuple[Tensor, Tensor]:
    """M of eq. 6 regrouped, F* = (1 - w) F + Z M, from the products of one pass over F.

    sol = K^-1 (N^T F + w N^T Z mu) = C^-1 (Z^T F + w G mu) (the D^-1 of N cancels against K = D^-1 C), and
    M = (1 - w)(w mu + w^2 sol).

    Args:
        zf: (B, n, d) Z^T F.
        gram: (B, n, n) G = Z^T Z (block-diagonal for several walks).
        mu: (B, n, d) representatives.
        chol: (B, n, n) Cholesky factor of C (``_capacitance_factor``).
        w: propagation weight.

    Returns:
        M (B, n, d) and sol (B, n, d) (kept for the backward).
    """
    sol = torch.cholesky_solve(torch.baddbmm(zf, gram, mu, alpha=w), chol)
    return (1.0 - w) * (w * mu + (w * w) * sol), sol


def _factors_forward(
    f: Tensor, mu: Tensor, mask: Tensor | None, reps_mask: Tensor | None, w: float, lam: float,
    groups: tuple[int, ...] | None = None, check_finite: bool = False,
):
    """Forward of eq. 6 up to its factors Z (B, T, n) and M (B, n, d), with F* = (1 - w) F + Z M on real rows;
    returns (z, m, saved) where ``saved`` is what ``_factors_backward`` needs. With ``groups``, several walks
    (consecutive sets of representatives) share the products with F; their n x n systems stay separate (C is
    block-diagonal), so each group's columns of Z and rows of M are its own walk's.

    One streaming pass over F (``_blocks``): per block |f_i|, P = F U^T and Z (eq. 2), and Z^T F accumulated while
    the block is in cache; then n x n work only (G = Z^T Z, column sums, one Cholesky factor). ``check_finite``
    raises ``ShapeError`` on NaN/Inf in F or mu as ``prepare_walk`` would, from |f_i| (non-finite where its row is;
    F itself is only scanned when a norm is not finite).
    """
    b, t, _ = f.shape
    n = mu.shape[1]
    mnorm = mu.norm(dim=-1, keepdim=True)  # (B, n, 1)
    u = mu / (mnorm + EPS)  # (B, n, d)
    fnorm, inv = f.new_empty(b, t), f.new_empty(b, t)
    p, z = f.new_empty(b, t, n), f.new_empty(b, t, n)
    zf = f.new_zeros(b, n, mu.shape[2])
    for bs, ts in _blocks(f):
        fc = f[bs, ts]
        rows = affinity_rows(fc, u[bs], lam, None if mask is None else mask[bs, ts],
                              None if reps_mask is None else reps_mask[bs], groups)
        for out, part in zip((fnorm, inv, p, z), rows):
            out[bs, ts] = part
        zf[bs].baddbmm_(rows[3].transpose(1, 2), fc)  # Z^T F, (B, n, d); in place: no temporary of F's size
    if check_finite:
        if not bool(torch.isfinite(fnorm).all()):
            expect_finite(f, name="features")  # raises unless the norm merely overflowed
        expect_finite(mu, name="reps")
    colsum = z.sum(dim=1)  # (B, n)
    scale = colsum.clamp(min=EPS)
    gram = torch.bmm(z.transpose(1, 2), z)  # (B, n, n)
    block = block_mask(groups, n, gram)
    if block is not None:
        gram = gram * block
    chol = _capacitance_factor(gram, scale, w)
    m, sol = _walk_factor(zf, gram, mu, chol, w)
    return z, m, (f, mu, fnorm, inv, mnorm, u, p, z, colsum, scale, gram, chol, sol, zf)


def _factors_backward(
    saved, dz: Tensor | None, dm: Tensor, w: float, lam: float, groups: tuple[int, ...] | None = None, *,
    go: Tensor | None = None, go_scale: Tensor | float = 0.0, m: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Backward of ``_factors_forward`` from the gradients of its outputs Z (dz (B, T, n) or None) and M (dm
    (B, n, d)); returns (dF (B, T, d), dmu (B, n, d)).

    With ``go`` (B, T, d), the gradient of F* = s F + Z M (``birw``), s = ``go_scale`` (a number or (B, T, 1)):
    ``dz`` is then go M^T, formed block by block (``m`` given), and dF starts from s go.

    Shapes per video: y = C^-1 ((1 - w) w^2 dM) (n, d) is the transposed solve with the forward's factor, since
    K^-T = (D^-1 C)^-T = C^-1 D; then dN^T-terms collapse to F y^T and Z E^T with E = dA / colsum (n, n). The
    column-sum term needs sum_t dN * Z, which is diag((Z^T F) dRHS^T + G dA^T): n x n work from the forward's
    Z^T F, so one streaming pass over F (and go) writes dF.
    """
    f, mu, fnorm, inv, mnorm, u, p, z, colsum, scale, gram, chol, sol, zf = saved
    dmu = ((1.0 - w) * w) * dm
    # M = (1 - w)(w mu + w^2 sol), sol = C^-1 (Z^T F + w G mu); rhs = D^-1 (Z^T F + w G mu), K = D^-1 C
    y = torch.cholesky_solve(((1.0 - w) * w * w) * dm, chol)  # (B, n, d), dRHS = D y
    drhs = scale[..., None] * y
    da = torch.baddbmm(torch.bmm(drhs, mu.transpose(1, 2)), drhs, sol.transpose(1, 2), beta=w, alpha=w * w)
    block = block_mask(groups, mu.shape[1], da)
    if block is not None:
        da = da * block  # A = (N^T Z) * block
    dmu = torch.baddbmm(dmu, gram, y, alpha=w)  # rhs = N^T F + w A mu: A^T dRHS = G D^-1 D y = G y
    # N = Z / max(colsum, eps): sum_t dN * Z from n x n products
    dnz = (zf * drhs).sum(dim=-1) + (gram * da).sum(dim=-1)  # (B, n)
    dscale = -dnz / (scale * scale) * (colsum > EPS).to(z.dtype)  # (B, n)
    e = da / scale[..., None]  # (B, n, n): dA rows over colsum
    e = e + e.transpose(1, 2)  # N dA and Z dA^T / colsum, both Z-terms of dZ
    du = torch.zeros_like(u)
    df = torch.empty_like(f)
    right = torch.cat([y, u], dim=1)  # (B, 2n, d): dF = Z y + dP U + coef F (+ s go)
    tiny = torch.finfo(f.dtype).tiny
    for bs, ts in _blocks(f):
        fc, zc, pc, ic = f[bs, ts], z[bs, ts], p[bs, ts], inv[bs, ts]
        base = dscale[bs, None, :]  # (b, 1, n)
        if dz is not None:
            base = base + dz[bs, ts]
        if go is not None:  # dZ of F* = s F + Z M
            base = torch.baddbmm(base, go[bs, ts], m[bs].transpose(1, 2))
        dzc = torch.baddbmm(torch.baddbmm(base, zc, e[bs]), fc, y[bs].transpose(1, 2))  # (b, t, n)
        dpc, dinv = affinity_rows_backward(zc, pc, ic, dzc, lam, groups)
        du[bs].baddbmm_(dpc.transpose(1, 2), fc)
        coef = (-dinv * ic * ic / fnorm[bs, ts].clamp(min=tiny))[..., None]  # r = 1 / (|f| + eps)
        # written in place into dF's block (a fresh temporary of a block's size costs page faults on every block)
        dfc = df[bs, ts]
        if go is None:
            torch.mul(fc, coef, out=dfc)
        else:  # dF = s go + ...
            torch.mul(go[bs, ts], go_scale if isinstance(go_scale, float) else go_scale[bs, ts], out=dfc)
            dfc.addcmul_(coef, fc)
        dfc.baddbmm_(torch.cat([zc, dpc], dim=2), right[bs])
    # U = mu / (|mu| + eps)
    denom = mnorm + EPS
    radial = (mu * du).sum(dim=-1, keepdim=True) / (mnorm.clamp(min=tiny) * denom * denom)
    radial = torch.where(mnorm > 0, radial, 0.0)  # mu = 0 (a missing representative): 0 / 0 -> 0
    dmu = dmu + du / denom - mu * radial
    return df, dmu


class WoodburyBiRW(torch.autograd.Function):
    """Eq. 6 in Woodbury form with an analytic backward.

    Forward, per video (shapes without the batch axis):
        r = 1 / (|f_i| + eps) (T,),  U = Norm_2(mu) (n, d),  P = F U^T (T, n),  Z = softmax(lambda r P) (T, n)
        D = diag(max(colsum Z, eps)),  G = Z^T Z (n, n),  C = D - w^2 G = L L^T,  sol = C^-1 (Z^T F + w G mu)
        M = (1 - w)(w mu + w^2 sol) (n, d),  F* = (1 - w) F + Z M
    which is the regrouped closed form (N = Z D^-1): N^T b = D^-1 (Z^T F + w G mu), I - w^2 N^T Z = D^-1 C and
    F* = (1 - w)(b + w^2 Z sol). F is read in two streaming passes (the first gives |f_i|, P, Z and Z^T F block
    by block, the second writes F*); the backward reads the incoming gradient once for Z^T dF*, then F and it once
    more while writing dF, and reuses the forward's Cholesky factor.
    """

    @staticmethod
    def forward(ctx, f, mu, mask, reps_mask, w, lam, check_finite):  # type: ignore[override]
        z, m, saved = _factors_forward(f, mu, mask, reps_mask, w, lam, check_finite=check_finite)
        out = torch.empty_like(f)
        keep = None if mask is None else (1.0 - w) * mask[..., None].to(f.dtype)  # (B, T, 1)
        for bs, ts in _blocks(f):
            block = torch.mul(f[bs, ts], (1.0 - w) if keep is None else keep[bs, ts], out=out[bs, ts])
            block.baddbmm_(z[bs, ts], m[bs])  # padded rows: z = 0 and keep = 0, so F* = 0 there
        ctx.save_for_backward(mask, m, *saved)
        ctx.w, ctx.lam = w, lam
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, go):  # type: ignore[override]
        mask, m, *saved = ctx.saved_tensors
        z = saved[7]
        w = ctx.w
        # F* = (1 - w) F + Z M: dM = Z^T go here, dZ = go M^T block by block in the pass that writes dF
        dm = torch.bmm(z.transpose(1, 2), go)  # (B, n, d)
        scale = (1.0 - w) if mask is None else (1.0 - w) * mask[..., None].to(go.dtype)
        df, dmu = _factors_backward(saved, None, dm, w, ctx.lam, go=go, go_scale=scale, m=m)
        return df, dmu, None, None, None, None, None


class BiRWFactors(torch.autograd.Function):
    """Eq. 6 up to its factors (Z, M): the forward and analytic backward of ``WoodburyBiRW`` without F*, for one
    walk or several on the same features (``groups``)."""

    @staticmethod
    def forward(ctx, f, mu, mask, reps_mask, w, lam, groups, check_finite):  # type: ignore[override]
        z, m, saved = _factors_forward(f, mu, mask, reps_mask, w, lam, groups, check_finite)
        ctx.save_for_backward(*saved)
        ctx.w, ctx.lam, ctx.groups = w, lam, groups
        return z, m

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dz, dm):  # type: ignore[override]
        saved = ctx.saved_tensors
        dz = torch.zeros_like(saved[7]) if dz is None else dz
        dm = torch.zeros_like(saved[1]) if dm is None else dm
        df, dmu = _factors_backward(saved, dz, dm, ctx.w, ctx.lam, ctx.groups)
        return df, dmu, None, None, None, None, None, None
