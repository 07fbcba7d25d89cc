"""The walk component (``Walk``): BiRW (eq. 6) by default, and the paper's propagation ablations
(``rskp.propagation``), other walks than eq. 6 and early fusion of the representatives, behind the same calls.
A new walk is one function registered under a name (``registry.register_walk``).

Symbols as in ``rskp_plugin.method.propagation``: B batch, T snippets, n representatives, d embedding size, K TCAM
columns (C or C+1). Every walk is batched, mask-aware and differentiable (autograd), and the feature walks keep the
factored form F^a = s F + Z M (``Propagated``) so heads' ``forward_branches`` serve them as they serve eq. 6:

    - ``birw`` (default): eq. 6 in closed form, ``propagation.birw_walks``;
    - ``random_walk`` (Table 5 row 1): F^a = Z mu, the one-way walk with no residual: s = 0, M = mu;
    - ``unrolled`` (Fig. 5): eq. 4-5 iterated k times from F^(0) = F. With G = N^T F and A = N^T Z (n x n),
      mu^(1) = w G + (1 - w) mu and mu^(t) = w (1 - w) G + w^2 A mu^(t-1) + (1 - w) mu, so only n x d work repeats:
      F^(k) = (1 - w) F + Z (w mu^(k)), s = 1 - w, M = w mu^(k). It tends to eq. 6 with error O(w^(2k));
    - ``scores`` (Table 5 "propagate scores"): eq. 6 run on class logits instead of features, the same Z (from F
      and mu): the main TCAM T and the representatives' logits classify(mu) take the places of F and mu, so
      T^a = (1 - w) T + Z M_T. The branch is that TCAM alone (``score_branches``); it gets no L_cls.

``inter_fusion: early`` (supplement Table 3) concatenates mu^a and the memory's mu^e into one walk
(``fuse_representatives``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ShapeError
from .birw_kernels import block_mask
from .registry import WALKS, walk_methods
from .propagation import (
    affinity_parts, birw_walks, column_normalize, float32_compute, prepare_walk, stack_walks,
)
from ..protocols import Head, HeadOutput, Propagated
from ..shapes import expect

Walks = list[tuple[Tensor, "Tensor | None"]]

#: The methods that walk something other than features (no feature walk).
SCORE_METHODS = ("scores",)


class Walk:
    """The walk component: BiRW (eq. 6, ``propagation.birw_walks``) by default, the paper's other walks
    (``VARIANTS``), a walk registered with ``registry.register_walk`` or the score walk by name, from plain values (``rskp.propagation``).

    Args:
        method: ``rskp.propagation.method``; weight: w in (0, 1); temperature: lambda of the affinity;
        steps: rounds of the unrolled walk; inter_fusion: "late" or "early" (``fuse``).
    """

    def __init__(self, method: str = "birw", weight: float = 0.5, temperature: float = 5.0, steps: int = 3,
                 inter_fusion: str = "late") -> None:
        if method not in walk_methods():
            raise ValueError(f"unknown rskp.propagation.method {method!r}; the walks are {', '.join(walk_methods())}")
        self.method, self.weight, self.temperature, self.steps = method, weight, temperature, steps
        self.inter_fusion = inter_fusion

    @property
    def walks_features(self) -> bool:
        """Whether the walk's output is features (every method but the score walk)."""
        return self.method not in SCORE_METHODS

    def fuse(self, walks: Walks) -> Walks:
        """``fuse_representatives`` under ``inter_fusion``: the walks as the branches run them."""
        return fuse_representatives(walks, self.inter_fusion)

    def features(self, features: Tensor, walks: Walks, mask: Tensor) -> list[Propagated]:
        """The walk of F (B, T, d) for each (reps (B, n_j, d), reps_mask (B, n_j) or None) of ``walks``, factored,
        in order (mask (B, T) bool)."""
        if self.method == "birw":
            return birw_walks(features, walks, self.weight, self.temperature, mask, check_finite=False)
        if not self.walks_features:
            raise ValueError(f"rskp.propagation.method={self.method!r} propagates no features")
        walk = VARIANTS.get(self.method) or WALKS[self.method]
        return walk(features, walks, mask, weight=self.weight, temperature=self.temperature, steps=self.steps)

    def scores(self, head: Head, feats: Tensor, mask: Tensor, walks: Walks,
               main: HeadOutput | None = None) -> list[HeadOutput]:
        """The score walk's branches, [main, one per walk] (``score_branches``)."""
        return score_branches(head, feats, mask, walks, self.weight, self.temperature, main=main)


def fuse_representatives(walks: Walks, inter_fusion: str = "late") -> Walks:
    """``inter_fusion: early``: the intra and inter walks [(mu^a, None), (mu^e, mask^e)] become one walk over
    [mu^a; mu^e] (B, n + n_e, d) with mask [1; mask^e]; "late", or a single walk, passes ``walks`` unchanged."""
    if inter_fusion == "late" or len(walks) < 2:
        return walks
    (reps, reps_mask), (mem, mem_mask) = walks
    ones = torch.ones(reps.shape[:2], dtype=torch.bool, device=reps.device)
    own = ones if reps_mask is None else reps_mask
    other = torch.ones(mem.shape[:2], dtype=torch.bool, device=mem.device) if mem_mask is None else mem_mask
    return [(torch.cat([reps, mem], dim=1), torch.cat([own, other], dim=1))]


def _walk_parts(features: Tensor, walks: Walks, w: float, temperature: float, mask: Tensor | None,
                check_finite: bool):
    """Validated, concatenated inputs and the affinity of several walks on the same features (one softmax per walk).

    Returns:
        F (B, T, d), mu (B, n, d) (every walk's, concatenated), mask (B, T) or None, Z (B, T, n), N^T (B, n, T),
        A = N^T Z (B, n, n) block-diagonal over the walks, and the walks' sizes n_j.
    """
    if features.dim() != 3:
        raise ShapeError(f"the walks take batched features (B, T, d), got shape {tuple(features.shape)}")
    if not walks:
        raise ShapeError("no walk to run: pass at least one (reps, reps_mask)")
    reps, masks, sizes = stack_walks(walks)
    f, mu, mask, reps_mask, _ = prepare_walk(features, reps, w, mask, masks, check_finite)
    z = affinity_parts(f, mu, temperature, mask, reps_mask, groups=sizes)[-1]  # (B, T, n)
    nrm_t = column_normalize(z).transpose(1, 2)  # N^T (B, n, T)
    a = torch.bmm(nrm_t, z)  # (B, n, n)
    block = block_mask(sizes, mu.shape[1], a)
    if block is not None:
        a = a * block  # a walk's representatives never meet another walk's
    return f, mu, mask, z, nrm_t, a, sizes


def _factored(f: Tensor, mask: Tensor | None, scale: float, z: Tensor, m: Tensor, sizes: tuple[int, ...]):
    keep = torch.ones(f.shape[:2], dtype=z.dtype, device=f.device) if mask is None else mask.to(z.dtype)
    return [Propagated(f, scale * keep, zj, mj) for zj, mj in zip(z.split(sizes, dim=-1), m.split(sizes, dim=1))]


def random_walks(
    features: Tensor, walks: Walks, temperature: float = 5.0, mask: Tensor | None = None, *, check_finite: bool = True
) -> list[Propagated]:
    """The one-way random walk of Table 5, F^a = Z mu (eq. 2's affinity, no residual F), for each walk.

    Args:
        features: (B, T, d) F.
        walks: (reps (B, n_j, d), reps_mask (B, n_j) bool or None) per walk.
        temperature: lambda of the affinity.
        mask: (B, T) bool or None; check_finite: as ``birw``.

    Returns:
        One ``Propagated`` per walk (s = 0, M = mu): ``dense()`` is Z mu, zero on padded rows.
    """
    f, mu, mask, z, _, _, sizes = _walk_parts(features, walks, 0.0, temperature, mask, check_finite)
    return _factored(f, mask, 0.0, z, mu, sizes)


def unrolled_walks(
    features: Tensor,
    walks: Walks,
    w: float = 0.5,
    steps: int = 3,
    temperature: float = 5.0,
    mask: Tensor | None = None,
    *,
    check_finite: bool = True,
) -> list[Propagated]:
    """BiRW by ``steps`` rounds of eq. 4-5 (Fig. 5) for each walk, factored and differentiable; the production form
    of ``reference.propagation.birw_unrolled`` (the same numbers), O(T n d + steps n^2 d) per video.

    mu^(t) = w N^T F^(t-1) + (1 - w) mu (eq. 4), F^(t) = w Z mu^(t) + (1 - w) F (eq. 5), F^(0) = F; as
    N^T F^(t-1) = (1 - w) G + w A mu^(t-1) (G = N^T F, A = N^T Z), F is read once whatever ``steps`` is.

    Args:
        features: (B, T, d); walks: as ``random_walks``; w: the propagation weight in [0, 1); steps: k >= 1;
        temperature, mask, check_finite: as ``birw``.

    Returns:
        One ``Propagated`` per walk with s = 1 - w and M = w mu^(k): ``dense()`` is F^(k), zero on padded rows.
    """
    if int(steps) < 1:
        raise ShapeError(f"the unrolled walk needs steps >= 1 (rounds of eq. 4-5), got {steps}")
    w = float(w)
    with float32_compute(features) as cast:  # the softmax over n and the repeated n x n products need float32
        f, mu, mask, z, nrm_t, a, sizes = _walk_parts(cast(features), [(cast(r), m) for r, m in walks], w,
                                                      temperature, mask, check_finite)
        g = torch.bmm(nrm_t, f)  # G = N^T F (B, n, d)
        cur = w * g + (1.0 - w) * mu  # mu^(1): F^(0) = F
        base = (w * (1.0 - w)) * g + (1.0 - w) * mu
        for _ in range(int(steps) - 1):
            cur = torch.baddbmm(base, a, cur, alpha=w * w)  # mu^(t) from mu^(t-1)
        return _factored(f, mask, 1.0 - w, z, w * cur, sizes)


def score_walks(features: Tensor, scores: Tensor, walks: list[tuple[Tensor, Tensor, "Tensor | None"]], w: float,
                temperature: float, mask: Tensor) -> list[Tensor]:
    """Eq. 6 on class logits (Table 5 "propagate scores"): each walk's representative logits S_mu walked into the
    snippet logits T with the affinity Z of the features, T^a = (1 - w)(I - w^2 Z N^T)^-1 (w Z S_mu + T).

    Regrouped as in ``birw_kernels.WoodburyBiRW`` (only an n x n system): T^a = (1 - w) T + Z M_T with
    M_T = (1 - w)(w S_mu + w^2 (I - w^2 A)^-1 (N^T T + w A S_mu)), A = N^T Z.

    Args:
        features: (B, T, d) F, which makes Z together with each walk's representatives.
        scores: (B, T, K) the snippets' logits (the main branch's TCAM).
        walks: (reps (B, n_j, d), reps_scores (B, n_j, K), reps_mask (B, n_j) bool or None) per walk.
        w, temperature: as ``birw``; mask: (B, T) bool.

    Returns:
        One T^a (B, T, K) per walk, zero on padded rows.
    """
    expect(scores, "B T K", name="scores", sizes={"B": features.shape[0], "T": features.shape[1]})
    with float32_compute(features) as cast:
        f, mu, mask, z, nrm_t, a, sizes = _walk_parts(
            cast(features), [(cast(r), m) for r, _, m in walks], float(w), temperature, mask, False)
        values = cast(scores)
        reps_scores = torch.cat([cast(s) for _, s, _ in walks], dim=1)  # (B, n, K)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        rhs = torch.bmm(nrm_t, values) + w * torch.bmm(a, reps_scores)  # (B, n, K)
        sol = torch.linalg.solve(eye - (w * w) * a, rhs)
        m = (1.0 - w) * (w * reps_scores + (w * w) * sol)  # (B, n, K)
        keep = (1.0 - w) * mask.to(values.dtype)[..., None]
        return [torch.baddbmm(keep * values, zj, mj) * mask[..., None].to(values.dtype)
                for zj, mj in zip(z.split(sizes, dim=-1), m.split(sizes, dim=1))]


def scores_output(main: HeadOutput, tcam: Tensor, num_classes: int) -> HeadOutput:
    """A branch known by its TCAM alone (B, T, K) as a prediction: ``main`` with that TCAM and the CAS rule
    softmax(T)[..., :C] x main's attention (FAC-Net's and RSKP's; the probabilities alone where the head has no
    attention); main's video scores, attention and extras; no ``score_cas`` (the CAS is scored)."""
    wide = tcam.to(torch.promote_types(tcam.dtype, torch.float32))  # float32 for bf16/fp16; float64 stays
    probs = torch.softmax(wide, dim=-1)[..., :num_classes].to(main.cas.dtype)
    cas = probs * main.attention[..., None] if main.attention is not None else probs
    return main._replace(tcam=tcam.to(main.tcam.dtype), cas=cas, score_cas=None)


def score_branches(head: Head, feats: Tensor, mask: Tensor, walks: Walks, w: float, temperature: float,
                   main: HeadOutput | None = None) -> list[HeadOutput]:
    """``rskp.propagation.method: scores``: [main, one branch per walk], each branch ``scores_output`` of
    T^a = eq. 6 on logits (``score_walks``) with the representatives' logits ``head.classify(mu)`` (B, n, K).

    Args:
        head: the head; feats: (B, T, d) F (the affinity's features); mask: (B, T) bool; walks: (reps (B, n_j, d),
        reps_mask or None); w, temperature: as ``birw``; main: the main branch's output where it ran already (else ``head(feats, mask)``).
    """
    main = head(feats, mask) if main is None else main
    scored = [(reps, head.classify(reps), reps_mask) for reps, reps_mask in walks]
    tcams = score_walks(feats, main.tcam, scored, w, temperature, mask)
    return [main] + [scores_output(main, t, head.num_classes) for t in tcams]


def _random_walk(features: Tensor, walks: Walks, mask: Tensor, *, weight: float, temperature: float,
                 steps: int) -> list[Propagated]:
    return random_walks(features, walks, temperature, mask, check_finite=False)


def _unrolled(features: Tensor, walks: Walks, mask: Tensor, *, weight: float, temperature: float,
              steps: int) -> list[Propagated]:
    return unrolled_walks(features, walks, weight, steps, temperature, mask, check_finite=False)


#: The paper's feature walks other than BiRW, by ``rskp.propagation.method``.
VARIANTS = {"random_walk": _random_walk, "unrolled": _unrolled}
