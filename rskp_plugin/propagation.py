"""Bipartite random walk (BiRW, paper 3.3): propagate representative snippets to every snippet of a video.

Symbols: B batch, T snippets, n representative snippets, d embedding size. ``mask`` (B, T) marks real snippets,
``reps_mask`` (B, n) marks real representatives (memory-bank retrievals pad videos with fewer classes).

Formulations of the same operator, all mask-aware:
    - ``birw``: eq. 6 in Woodbury form, O(T n d), no T x T matrix is ever formed; returns F*;
    - ``birw_factors`` / ``birw_walks``: the same closed form kept factored, F* = (1 - w) F + Z M with M (n, d)
      (``Propagated``), for one walk or several on the same features sharing their passes over F; what
      ``RSKPWrapper`` runs (its intra and inter walks together);

Reference formulations for tests and benchmarks (``birw_unrolled``, ``birw_dense``, ``birw_official``) live in
``rskp_plugin.reference.propagation``; a new variant validates and finishes its inputs with ``prepare_walk`` and
``finish_walk`` as they do.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch
from torch import Tensor

from .shapes import expect, expect_finite
from .errors import ShapeError
from .protocols import Propagated

EPS = 1e-9  # added to norms and column sums, as the official code does


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
    return affinity_parts(features, reps, temperature, mask, reps_mask)[-1]


def affinity_parts(
    features: Tensor,
    reps: Tensor,
    temperature: float,
    mask: Tensor | None,
    reps_mask: Tensor | None,
    fnorm: Tensor | None = None,
    groups: tuple[int, ...] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Eq. 2 with its intermediates (kept by the analytic backward of ``birw``); ``fnorm`` may pass |f_i| (B, T)
    when the caller reuses it (EM iterations on the same features); ``groups`` splits the n representatives into
    consecutive sets of these sizes, each with its own softmax (several walks on the same features at once).

    Returns:
        |f_i| (B, T), r = 1 / (|f_i| + eps) (B, T), |mu_k| (B, n, 1), U = Norm_2(mu) (B, n, d), P = F U^T (B, T, n)
        and Z (B, T, n).
    """
    mnorm = reps.norm(dim=-1, keepdim=True)  # (B, n, 1)
    u = reps / (mnorm + EPS)  # (B, n, d)
    fnorm, inv, p, z = _affinity_rows(features, u, temperature, mask, reps_mask, groups, fnorm)
    return fnorm, inv, mnorm, u, p, z


def _affinity_rows(
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


def _affinity_rows_backward(
    z: Tensor, p: Tensor, inv: Tensor, dz: Tensor, temperature: float, groups: tuple[int, ...] | None
) -> tuple[Tensor, Tensor]:
    """Backward of eq. 2 (``_affinity_rows``) to P and r for a run of snippets.

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


def column_normalize(z: Tensor, eps: float = EPS) -> Tensor:
    """Column-wise l1 normalisation ``Norm_1`` over time (eq. 3): Z (B, T, n) -> N (B, T, n), columns sum to 1.

    The official code adds 1e-9 to the column sums; clamping them at 1e-9 instead keeps every column summing to
    exactly 1 (the paper's Norm_1, so EM means are true convex combinations) and an all-zero column at zero.
    """
    return z / z.sum(dim=1, keepdim=True).clamp(min=eps)


def prepare_walk(
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


def finish_walk(out: Tensor, mask: Tensor | None, squeeze: bool) -> Tensor:
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

    F* = (1 - w) (I_T - w^2 Z N^T)^-1 (w Z mu + F) with Z the affinity of eq. 2 and N = Norm_1(Z). By the
    Woodbury identity (I_T - w^2 Z N^T)^-1 = I_T + w^2 Z (I_n - w^2 N^T Z)^-1 N^T, so with b = w Z mu + F only an
    n x n system is solved: F* = (1 - w) (b + w^2 Z (I_n - w^2 N^T Z)^-1 N^T b). Cost O(T n d + n^3) per video.
    The forward and the hand-written backward read the (T, d) data a handful of times and write it once each
    (see ``_WoodburyBiRW``); under autocast (CUDA or CPU) it runs in float32 (the n x n solve needs it).

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
    # the finite check rides on the forward's pass over F (|f_i| is non-finite where a row is): no pass of its own
    f, mu, mask, reps_mask, squeeze = prepare_walk(features, reps, w, mask, reps_mask, False)
    with float32_compute(f) as cast:
        out = _WoodburyBiRW.apply(cast(f), cast(mu), mask, reps_mask, float(w), float(temperature), check_finite)
    return out[0] if squeeze else out


@contextlib.contextmanager
def float32_compute(like: Tensor):
    """Under autocast on ``like``'s device (CUDA or CPU): autocast off inside, and a cast of the inputs to float32
    (the n x n solve and the softmax over n need it; low-precision inputs would also break the hand-written
    backward's dtype checks). Without autocast, inputs pass unchanged. Yields the cast function."""
    device = like.device.type
    if not torch.is_autocast_enabled(device):
        yield lambda t: t
        return
    with torch.autocast(device_type=device, enabled=False):
        yield lambda t: t.float()


def _block_mask(groups: tuple[int, ...] | None, n: int, like: Tensor) -> Tensor | None:
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
        rows = _affinity_rows(fc, u[bs], lam, None if mask is None else mask[bs, ts],
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
    block = _block_mask(groups, n, gram)
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
    block = _block_mask(groups, mu.shape[1], da)
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
        dpc, dinv = _affinity_rows_backward(zc, pc, ic, dzc, lam, groups)
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


class _WoodburyBiRW(torch.autograd.Function):
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


class _BiRWFactors(torch.autograd.Function):
    """Eq. 6 up to its factors (Z, M): the forward and analytic backward of ``_WoodburyBiRW`` without F*, for one
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


def stack_walks(walks: Sequence[tuple[Tensor, Tensor | None]]) -> tuple[Tensor, Tensor | None, tuple[int, ...]]:
    """Several walks' representatives side by side: each (reps (B, n_j, d), reps_mask (B, n_j) or None) ->
    (reps (B, sum n_j, d), their mask or None where every walk has none, the sizes n_j)."""
    for j, (r, _) in enumerate(walks):
        expect(r, "B n d", name=f"reps of walk {j}")
    sizes = tuple(int(r.shape[1]) for r, _ in walks)
    reps = torch.cat([r for r, _ in walks], dim=1) if len(walks) > 1 else walks[0][0]
    masks = None
    if any(m is not None for _, m in walks):
        masks = torch.cat([
            m if m is not None else torch.ones(r.shape[:2], dtype=torch.bool, device=r.device) for r, m in walks
        ], dim=1)
    return reps, masks, sizes


def birw_factors(
    features: Tensor,
    reps: Tensor,
    w: float = 0.5,
    temperature: float = 5.0,
    mask: Tensor | None = None,
    *,
    reps_mask: Tensor | None = None,
    check_finite: bool = True,
) -> Propagated:
    """``birw`` (eq. 6) returned factored, F* = (1 - w) F + Z M on real snippets, without forming F*.

    Args and shapes as ``birw`` with a batch axis: features (B, T, d), reps (B, n, d), mask (B, T), reps_mask
    (B, n).

    Returns:
        ``Propagated`` whose ``dense()`` equals ``birw(...)``; gradients reach F and mu through every use.
    """
    return birw_walks(features, [(reps, reps_mask)], w, temperature, mask, check_finite=check_finite)[0]


def birw_walks(
    features: Tensor,
    walks: list[tuple[Tensor, Tensor | None]],
    w: float = 0.5,
    temperature: float = 5.0,
    mask: Tensor | None = None,
    *,
    check_finite: bool = True,
) -> list[Propagated]:
    """Several walks (eq. 6) on the same features at once, factored: ``[birw_factors(F, mu, ...) for mu in ...]``.

    The walks share every product with F (|f_i|, F U^T, N^T F and their backward), one pass each instead of one
    per walk: RSKP's intra walk (the video's own representatives) and inter walk (the memory bank's) run together.

    Args:
        features: (B, T, d).
        walks: (reps (B, n_j, d), reps_mask (B, n_j) bool or None) per walk.
        w, temperature, mask, check_finite: as ``birw``.

    Returns:
        One ``Propagated`` per walk, in order.
    """
    if features.dim() != 3:
        raise ShapeError(f"birw_factors takes batched features (B, T, d), got shape {tuple(features.shape)}")
    if not walks:
        return []
    reps, masks, sizes = stack_walks(walks)
    f, mu, mask, reps_mask, _ = prepare_walk(features, reps, w, mask, masks, False)  # checked in the pass over F
    with float32_compute(f) as cast:
        z, m = _BiRWFactors.apply(cast(f), cast(mu), mask, reps_mask, float(w), float(temperature), sizes,
                                  check_finite)
    keep = torch.ones(f.shape[:2], dtype=z.dtype, device=f.device) if mask is None else mask.to(z.dtype)
    f, scale = f.to(z.dtype), (1.0 - float(w)) * keep
    return [Propagated(f, scale, zj, mj) for zj, mj in zip(z.split(sizes, dim=-1), m.split(sizes, dim=1))]
