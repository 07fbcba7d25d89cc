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
``finish_walk`` as they do. The streaming, Cholesky-factored kernels with their analytic backwards are in
``rskp_plugin.method.birw_kernels``.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch
from torch import Tensor

from .birw_kernels import EPS, BiRWFactors, WoodburyBiRW, affinity_rows
from ..errors import ShapeError
from ..protocols import Propagated
from ..shapes import expect, expect_finite



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
    fnorm, inv, p, z = affinity_rows(features, u, temperature, mask, reps_mask, groups, fnorm)
    return fnorm, inv, mnorm, u, p, z


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
    (see ``WoodburyBiRW``); under autocast (CUDA or CPU) it runs in float32 (the n x n solve needs it).

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
        out = WoodburyBiRW.apply(cast(f), cast(mu), mask, reps_mask, float(w), float(temperature), check_finite)
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
        z, m = BiRWFactors.apply(cast(f), cast(mu), mask, reps_mask, float(w), float(temperature), sizes,
                                  check_finite)
    keep = torch.ones(f.shape[:2], dtype=z.dtype, device=f.device) if mask is None else mask.to(z.dtype)
    f, scale = f.to(z.dtype), (1.0 - float(w)) * keep
    return [Propagated(f, scale, zj, mj) for zj, mj in zip(z.split(sizes, dim=-1), m.split(sizes, dim=1))]
