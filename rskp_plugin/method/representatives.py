"""How the representative snippets mu^a are made: EM attention (the default) and the paper's ablations of it.

``rskp.summarizer.method`` (paper Tables 3-4, supplement Table 2) and ``rskp.summarizer.region`` (supplement
Table 2) choose; ``Representatives.select`` is what ``RSKPWrapper`` calls (training, ``branch_outputs`` and
``initialize_memory`` alike): EM attention directly by default, else one function per method below. Symbols: B batch, T snippets, d embedding size, n representatives.

Every method sees only a video's real snippets (``mask``) and draws no random numbers, so a padded batch gives the
numbers of each video alone. A method that cannot make n representatives for a video (fewer than n snippets, or an
empty cluster) returns zeros there and marks them False in ``reps_mask``: the walk leaves them out (eq. 2's softmax
runs over the real ones) and the memory bank never stores them (their scores are -inf).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

from ..errors import MissingDependencyError
from .propagation import float32_compute
from ..protocols import HeadOutput, Propagated

#: Lloyd iterations of ``kmeans`` at most (it stops earlier once no assignment changes).
KMEANS_ITERATIONS = 20

#: Methods that rank snippets by the main branch's foreground score (the main branch runs first for them).
SCORED_METHODS = ("discriminative", "extremes")


class Selection(NamedTuple):
    """The representatives of one batch and what the walks run on.

    Attributes:
        reps: (B, n, d) mu^a (``features``: (B, T, d), the walk's input itself).
        reps_mask: (B, n) bool, False on missing representatives, or None (all real).
        features: (B, T, d) what is summarised and walked: F, or F S under a ``region``.
        region: (B, T) S, the detached score F is modulated with (zero on padding), or None (``region: all``).
        bank: (B, n, d) what the memory bank is offered (detached): ``reps``, except under ``features``, where it
            is EM attention over ``features``; None where it was not asked for.
        bank_mask: (B, n) bool or None, ``reps_mask`` of ``bank``.
    """

    reps: Tensor
    reps_mask: Tensor | None
    features: Tensor
    region: Tensor | None
    bank: Tensor | None
    bank_mask: Tensor | None

    def rebase(self, walked: list[Propagated], feats: Tensor, mask: Tensor) -> list[Propagated]:
        """The walks of ``features`` as walks of F (unchanged without a region).

        Supplement Table 2: F_S = F S is walked, F_S* = s F_S + Z M (s = 1 - w for eq. 6), and F (1 - S) added
        back, so on real snippets F* = F (s S + 1 - S) + Z M: the same factored form (``Propagated``), which heads
        with ``forward_branches`` read like any walk. Shapes: feats (B, T, d), mask (B, T); each walk's scale
        (B, T), z (B, T, n), m (B, n, d).
        """
        if self.region is None:
            return walked
        out = []
        for p in walked:
            region, keep = self.region.to(p.z.dtype), mask.to(p.z.dtype)
            out.append(p._replace(features=feats.to(p.z.dtype), scale=p.scale * region + keep * (1.0 - region)))
        return out


def foreground_scores(main: HeadOutput, mask: Tensor) -> Tensor:
    """S_f of supplement Table 2, detached: the main branch's attention (B, T), or, for a head without one, the
    largest class probability of its CAS (B, T, C) per snippet; zero on padding (mask (B, T)).

    Detached because the ablations change where the representatives come from, not what trains the attention:
    with gradient through F S, the propagated branches' losses would become a second objective of the attention
    that the default model does not have (and the top-n selections are not differentiable anyway).
    """
    score = main.attention if main.attention is not None else main.cas.amax(dim=-1)
    return score.detach() * mask.to(score.dtype)


class Representatives:
    """The representatives component: mu^a of ``method`` over ``region``, from plain values (``rskp.summarizer``).

    Args:
        summarizer: the EM attention module (``EMSummarizer``): (B, T, d), (B, T) -> (B, n, d); owned by the
            wrapper (its initial means are the wrapper's parameters), read here.
        method: one of ``config.SUMMARIZER_METHODS``; "em" (default) is the summariser itself.
        region: "all" (default), "foreground" or "background".
        num_representatives: n, for the methods other than "em" (EM attention has its own n).
        temperature: lambda of the spectral method's affinity.
    """

    def __init__(self, summarizer: Callable[[Tensor, Tensor], Tensor], method: str = "em", region: str = "all",
                 num_representatives: int = 8, temperature: float = 5.0) -> None:
        require_clustering(method)  # a missing optional dependency fails here, not at the first batch
        self.summarizer, self.method, self.region = summarizer, method, region
        self.num_representatives, self.temperature = num_representatives, temperature

    @property
    def needs_scores(self) -> bool:
        """Whether the representatives need the main branch's scores (the main branch then runs before the walk)."""
        return self.method in SCORED_METHODS or self.region != "all"

    def select(self, feats: Tensor, mask: Tensor, main: HeadOutput | None = None, *, bank: bool = False) -> Selection:
        """The representatives of F (B, T, d) (zero on padding; mask (B, T) bool, True on real snippets).

        Args:
            main: the main branch's output, required where ``needs_scores``.
            bank: also make the memory bank's offer (``Selection.bank``).

        Returns:
            ``Selection``; for the defaults (``em`` over ``all``) exactly ``summarizer(feats, mask)``.
        """
        if self.method == "em" and self.region == "all":  # the paper's method: EM attention over every snippet
            reps = self.summarizer(feats, mask)
            return Selection(reps, None, feats, None, reps.detach() if bank else None, None)
        return self._variant(feats, mask, main, bank)

    def _variant(self, feats: Tensor, mask: Tensor, main: HeadOutput | None, bank: bool) -> Selection:
        region = None
        scores = None
        if self.needs_scores:
            if main is None:
                raise ValueError(f"rskp.summarizer method={self.method!r} region={self.region!r} needs the main "
                                 "branch's output (main=...)")
            scores = foreground_scores(main, mask)  # (B, T)
            if self.region != "all":
                region = scores if self.region == "foreground" else (1.0 - scores) * mask.to(scores.dtype)
        f = feats if region is None else feats * region[..., None].to(feats.dtype)  # (B, T, d)
        n, method, summarizer = self.num_representatives, self.method, self.summarizer
        reps_mask: Tensor | None = None
        if method == "em":
            reps = summarizer(f, mask)
        elif method == "em_nograd":
            reps = em_without_backpropagation(summarizer, f, mask)
        elif method == "kmeans":
            reps, reps_mask = kmeans(f, mask, n)
        elif method == "agglomerative":
            reps, reps_mask = agglomerative(f, mask, n)
        elif method == "spectral":
            reps, reps_mask = spectral(f, mask, n, temperature=self.temperature)
        elif method == "discriminative":
            reps, reps_mask = discriminative(f, mask, scores, n)  # type: ignore[arg-type]
        elif method == "extremes":
            reps, reps_mask = extremes(f, mask, scores, n)  # type: ignore[arg-type]
        elif method == "features":
            reps, reps_mask = f, mask
        else:  # the config's validator lists the methods; a new one must be added here too
            raise ValueError(f"unknown rskp.summarizer.method {method!r}")
        offer = offer_mask = None
        if bank:
            if method == "features":  # the bank keeps n representatives per class: EM attention's
                with torch.no_grad():
                    offer = summarizer(f, mask).detach()
            else:
                offer, offer_mask = reps.detach(), reps_mask
        return Selection(reps, reps_mask, f, region, offer, offer_mask)


def em_without_backpropagation(summarizer: Callable[[Tensor, Tensor], Tensor], feats: Tensor, mask: Tensor) -> Tensor:
    """Table 4 "EM-Att w/o BP": EM attention (eq. 2-3) as a constant of the features: no gradient reaches F through
    the iterations, and mu^(0) keeps its initial value (it gets no gradient). feats (B, T, d), mask (B, T) ->
    (B, n, d); the walk still back-propagates into F through its affinity to these representatives."""
    with torch.no_grad():
        return summarizer(feats.detach(), mask)


def cluster_means(feats: Tensor, assign: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Each cluster's mean snippet: the representatives of the clustering methods (gradient flows through the
    means, not the assignment), in the order of each cluster's first snippet in time, empty clusters last.

    Args:
        feats: (B, T, d).
        assign: (B, T) long, the cluster in [0, n) of each snippet, -1 on padding.
        n: clusters per video.

    Returns:
        reps (B, n, d), zero for an empty cluster, and reps_mask (B, n), False for an empty cluster.
    """
    length = assign.shape[1]
    real = assign >= 0
    first = torch.full(assign.shape[:1] + (n,), length, dtype=torch.long, device=assign.device).scatter_reduce(
        1, assign.clamp(min=0), torch.where(real, torch.arange(length, device=assign.device), length), reduce="amin")
    number = torch.argsort(torch.argsort(first, dim=1, stable=True), dim=1)  # (B, n): each cluster's new number
    assign = torch.where(real, number.gather(1, assign.clamp(min=0)), -1)
    onehot = (assign[..., None] == torch.arange(n, device=assign.device)).to(feats.dtype)  # (B, T, n)
    counts = onehot.sum(dim=1)  # (B, n)
    reps = torch.bmm(onehot.transpose(1, 2), feats) / counts.clamp(min=1.0)[..., None]
    return reps, counts > 0


def _real_order(mask: Tensor) -> Tensor:
    """(B, T) snippet indices with each video's real snippets first, in time order (a stable sort on padding)."""
    return torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices


def kmeans(feats: Tensor, mask: Tensor, n: int, iterations: int = KMEANS_ITERATIONS) -> tuple[Tensor, Tensor]:
    """Table 4 "k-Means": Lloyd's algorithm on each video's real snippets (Euclidean), min(n, L) clusters for a
    video of L snippets, initialised deterministically at evenly spaced snippets (the k-th of k clusters at real
    snippet floor((k + 1/2) L / min(n, L))); representatives are the cluster means (``cluster_means``).

    Args:
        feats: (B, T, d); mask: (B, T) bool; n: clusters per video; iterations: Lloyd steps at most.

    Returns:
        reps (B, n, d) and reps_mask (B, n).
    """
    with float32_compute(feats) as cast:
        f = cast(feats)
        with torch.no_grad():
            x = f.detach()
            lengths = mask.sum(dim=1)  # (B,)
            k = lengths.clamp(max=n)  # clusters per video
            idx = torch.arange(n, device=x.device)
            valid = idx[None] < k[:, None]  # (B, n)
            pos = torch.div((2 * idx[None] + 1) * lengths[:, None], 2 * k[:, None], rounding_mode="floor")
            start = _real_order(mask).gather(1, pos.clamp(max=x.shape[1] - 1))  # (B, n) snippet index
            centres = x.gather(1, start[..., None].expand(-1, -1, x.shape[-1]))  # (B, n, d)
            assign = None
            for _ in range(iterations):
                # |x - c|^2 up to |x|^2, which does not change the argmin
                dist = (centres * centres).sum(dim=-1)[:, None, :] - 2.0 * torch.bmm(x, centres.transpose(1, 2))
                new = dist.masked_fill(~valid[:, None, :], float("inf")).argmin(dim=-1).masked_fill(~mask, -1)
                if assign is not None and torch.equal(new, assign):
                    break
                assign = new
                means, filled = cluster_means(x, assign, n)
                centres = torch.where(filled[..., None], means, centres)  # an emptied cluster keeps its centre
        return cluster_means(f, assign, n)  # type: ignore[arg-type]


def _sklearn_cluster(method: str) -> Any:
    """``sklearn.cluster``, or ``MissingDependencyError`` naming the extra that installs it."""
    try:
        from sklearn import cluster
    except ImportError as exc:
        raise MissingDependencyError(
            f"rskp.summarizer.method={method} needs scikit-learn, which is not installed: "
            'pip install "rskp-plugin[clustering]"'
        ) from exc
    return cluster


def require_clustering(method: str) -> None:
    """Fail early (when a model is built) where ``method`` needs scikit-learn and it is missing."""
    if method in ("agglomerative", "spectral"):
        _sklearn_cluster(method)


def _per_video(feats: Tensor, mask: Tensor, n: int, labels_of: Callable[[Any, int], Any]) -> tuple[Tensor, Tensor]:
    """Cluster each video's real snippets on the CPU in float64 with ``labels_of(x (L, d) array, k)`` (k = min(n,
    L) clusters, 2 <= k < L; L <= n makes each snippet its own cluster); the representatives are the cluster means
    of ``feats`` (``cluster_means``). feats (B, T, d), mask (B, T)."""
    assign = torch.full(mask.shape, -1, dtype=torch.long)
    x = feats.detach().to("cpu", torch.float64)
    for b in range(mask.shape[0]):
        real = mask[b].nonzero()[:, 0].cpu()  # (L,)
        length = int(real.numel())
        if length <= n or n == 1:
            labels = torch.arange(length) if n > 1 else torch.zeros(length, dtype=torch.long)
        else:
            labels = torch.as_tensor(labels_of(x[b, real].numpy(), n), dtype=torch.long)
        assign[b, real] = labels
    return cluster_means(feats, assign.to(feats.device), n)


def agglomerative(feats: Tensor, mask: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Table 4 "Agglomerative Clustering": scikit-learn's Ward linkage (Euclidean) into min(n, L) clusters per
    video; representatives are the cluster means. feats (B, T, d), mask (B, T) -> reps (B, n, d), reps_mask (B, n).
    """
    cluster = _sklearn_cluster("agglomerative")
    return _per_video(feats, mask, n, lambda x, k: cluster.AgglomerativeClustering(n_clusters=k).fit_predict(x))


def spectral(feats: Tensor, mask: Tensor, n: int, *, temperature: float = 5.0) -> tuple[Tensor, Tensor]:
    """Table 4 "Spectral Clustering": scikit-learn's spectral clustering into min(n, L) clusters per video on the
    affinity exp(lambda (cos(f_i, f_j) - 1)) (the walk's cosine at its temperature lambda; positive everywhere,
    so the graph is connected), labels by the deterministic QR assignment; representatives are the cluster means.
    feats (B, T, d), mask (B, T) -> reps (B, n, d), reps_mask (B, n)."""
    cluster = _sklearn_cluster("spectral")

    def labels_of(x: Any, k: int) -> Any:
        import numpy as np

        unit = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)
        affinity = np.exp(temperature * (unit @ unit.T - 1.0))
        model = cluster.SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="cluster_qr",
                                           random_state=0)
        return model.fit_predict(affinity)

    return _per_video(feats, mask, n, labels_of)


def _ranked(feats: Tensor, mask: Tensor, scores: Tensor, positions: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """The snippets at ``positions`` (B, n) of each video's ranking by descending score (ties in time order;
    padding last), zero where ``valid`` (B, n) is False. feats (B, T, d), mask and scores (B, T)."""
    order = torch.sort(scores.masked_fill(~mask, float("-inf")), dim=1, descending=True, stable=True).indices
    index = order.gather(1, positions.clamp(min=0, max=order.shape[1] - 1))  # (B, n)
    reps = feats.gather(1, index[..., None].expand(-1, -1, feats.shape[-1]))  # (B, n, d)
    return reps * valid[..., None].to(reps.dtype), valid


def discriminative(feats: Tensor, mask: Tensor, scores: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Table 4 "Discriminative snippets": the n real snippets of highest foreground score, themselves (gradient
    flows into the chosen snippets). feats (B, T, d), mask (B, T), scores (B, T) (``foreground_scores``) -> reps
    (B, n, d) in descending score and reps_mask (B, n) (a video of L < n snippets has L)."""
    idx = torch.arange(n, device=feats.device)[None].expand(mask.shape[0], -1)  # (B, n)
    return _ranked(feats, mask, scores, idx, idx < mask.sum(dim=1, keepdim=True))


def extremes(feats: Tensor, mask: Tensor, scores: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Supplement Table 2 "representative snippets of high scores": the ceil(n/2) real snippets of highest and
    the floor(n/2) of lowest foreground score (top-k and bottom-k), never the same snippet twice (a video of L < n
    snippets gives all of them). feats (B, T, d), mask (B, T), scores (B, T) -> reps (B, n, d) (the top ones
    first, then the bottom ones from the lowest up) and reps_mask (B, n)."""
    top = math.ceil(n / 2)
    lengths = mask.sum(dim=1, keepdim=True)  # (B, 1)
    idx = torch.arange(n, device=feats.device)[None]  # (1, n)
    bottom = idx - top  # the j-th lowest: ranking position L - 1 - j
    positions = torch.where(idx < top, idx, lengths - 1 - bottom)
    valid = torch.where(idx < top, idx < lengths, bottom < lengths - lengths.clamp(max=top))
    return _ranked(feats, mask, scores, positions, valid)
