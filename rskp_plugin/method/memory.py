"""Per-class memory bank of representative snippets (paper 3.2)."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from ..shapes import expect


class MemoryBank(nn.Module):
    """Keeps, for each class, the ``slots`` representative snippets with the highest score for that class.

    The table M (C, s, d) and its scores (C, s) are buffers, so they travel with ``state_dict`` and ``.to()``.
    Unfilled slots have score -inf and are never retrieved. The kept set is the top-s of every candidate ever
    offered for the class, so it does not depend on the update order (up to exact score ties). That is what lets
    data-parallel training collect a step's offers (``deferred_updates``) and apply them in one ``update`` whose
    ``gather`` adds every process's rows.

    Args:
        num_classes: C.
        slots: s, slots per class (5).
        dim: d, the embedding size.
    """

    def __init__(self, num_classes: int, slots: int = 5, dim: int = 2048) -> None:
        super().__init__()
        self.num_classes, self.slots, self.dim = num_classes, slots, dim
        self.register_buffer("bank", torch.zeros(num_classes, slots, dim))
        self.register_buffer("scores", torch.full((num_classes, slots), float("-inf")))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))  # set once the warm-up pass filled it
        self._deferred: list[tuple[Tensor, Tensor, Tensor]] | None = None  # offers collected by deferred_updates

    def reset(self) -> None:
        self.bank.zero_()
        self.scores.fill_(float("-inf"))
        self.ready.fill_(False)

    @property
    def filled(self) -> Tensor:
        """(C, s) bool: which slots hold a snippet."""
        return torch.isfinite(self.scores)

    @torch.no_grad()
    def update(self, reps: Tensor, scores: Tensor, labels: Tensor, *,
               gather: Callable[[Tensor], Tensor] | None = None) -> None:
        """Offer each video's representative snippets to the classes it is labelled with.

        For every ground-truth class c of a video, its n snippets compete with the stored s entries of class c on
        their class-c score; the top s are kept (entries and scores). Inside ``deferred_updates`` the offer is
        recorded instead and the bank is left as it is.

        Args:
            reps: (B, n, d) representative snippets (detached).
            scores: (B, n, C) their class probabilities (the head's classifier).
            labels: (B, C) multi-hot ground truth.
            gather: concatenates a tensor's rows from every process (``DataParallel``), so that all processes'
                banks stay identical; None: this process's rows only. Every process must then make the call.
        """
        sizes = expect(reps, "B n d", name="reps", sizes={"d": self.dim})
        expect(scores, "B n C", name="scores", sizes={**sizes, "C": self.num_classes})
        expect(labels, "B C", name="labels", sizes={**sizes, "C": self.num_classes})
        if self._deferred is not None:
            # in the bank's dtype (float32; float64 in a float64 run): every process gathers the same dtype
            dtype = self.bank.dtype
            self._deferred.append((reps.detach().to(dtype), scores.detach().to(dtype), labels.detach().to(dtype)))
            return
        reps, scores, labels = reps.detach(), scores.detach(), labels.detach()
        if gather is not None:
            reps, scores, labels = (gather(x) for x in (reps, scores, labels))
        batch, n = reps.shape[:2]
        # Candidate scores per class: (C, B*n), -inf where the video does not have the class.
        cand = scores.masked_fill(labels[:, None, :] <= 0, float("-inf"))  # (B, n, C)
        cand = cand.permute(2, 0, 1).reshape(self.num_classes, batch * n).to(self.scores.dtype)
        pooled = torch.cat([self.scores, cand], dim=1)  # (C, s + B*n)
        top, idx = pooled.topk(self.slots, dim=1)  # (C, s)
        from_bank = idx < self.slots
        flat = reps.reshape(batch * n, self.dim).to(self.bank.dtype)  # (B*n, d)
        old = self.bank.gather(1, idx.clamp(max=self.slots - 1)[..., None].expand(-1, -1, self.dim))
        new = flat[(idx - self.slots).clamp(min=0)]  # (C, s, d)
        self.bank.copy_(torch.where(from_bank[..., None], old, new))
        self.scores.copy_(top)

    @contextlib.contextmanager
    def deferred_updates(self) -> Iterator[list[tuple[Tensor, Tensor, Tensor]]]:
        """Collect the ``update`` calls made in the block instead of applying them.

        Yields:
            The list the offers are appended to, as (reps (B, n, d), scores (B, n, C), labels (B, C)) in the bank's dtype;
            the caller applies them with one ``update`` of their concatenation after the block (the kept set is the
            top-s of every candidate offered, so this equals applying them as they came). Retrieval in the block
            sees the bank as it was before it.
        """
        if self._deferred is not None:
            raise RuntimeError("MemoryBank.deferred_updates does not nest")
        self._deferred = []
        try:
            yield self._deferred
        finally:
            self._deferred = None

    def retrieve(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The stored snippets of each video's ground-truth classes, concatenated in class-index order.

        Args:
            labels: (B, C) multi-hot.

        Returns:
            reps (B, K*s, d) and reps_mask (B, K*s) bool, K = the most classes any video of the batch has;
            videos with fewer classes and unfilled slots are padded (mask False).
        """
        expect(labels, "B C", name="labels", sizes={"C": self.num_classes})
        order, valid = _positive_classes(labels)  # (B, K)
        k = order.shape[1]
        reps = self.bank[order].reshape(labels.shape[0], k * self.slots, self.dim)  # (B, K*s, d)
        mask = (valid[..., None] & self.filled[order]).reshape(labels.shape[0], k * self.slots)
        return reps, mask

    def retrieve_in_order(self, reps: Tensor, scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """``retrieve`` for each video of a batch as the official one-video loop sees it: row i reads the bank
        after the rows before it were offered (``update`` of rows 0 .. i-1), without changing the bank.

        The official code retrieves, then updates, video by video. Because the kept set is the top-s of all
        candidates ever offered, the bank row i would see equals the top-s over the stored entries and the
        candidates of rows < i, which is computed here for all rows at once. With this and ``update`` of the
        whole batch afterwards, a padded batch trains exactly like the one-video loop over its rows in order.
        In data-parallel training only this process's earlier rows count (every process's offers of a step are
        applied at its end: ``engine.distributed.gathered_memory_updates``).

        Args:
            reps: (B, n, d) the batch's representative snippets (detached).
            scores: (B, n, C) their class probabilities.
            labels: (B, C) multi-hot ground truth.

        Returns:
            reps (B, K*s, d) and reps_mask (B, K*s) bool, laid out as ``retrieve`` lays them out.
        """
        sizes = expect(reps, "B n d", name="reps", sizes={"d": self.dim})
        expect(scores, "B n C", name="scores", sizes={**sizes, "C": self.num_classes})
        expect(labels, "B C", name="labels", sizes={**sizes, "C": self.num_classes})
        batch, n, s = sizes["B"], sizes["n"], self.slots
        order, valid = _positive_classes(labels)  # (B, K) each
        k = order.shape[1]
        cand = scores.detach().masked_fill(labels[:, None, :] <= 0, float("-inf")).to(self.scores.dtype)
        cand = cand.permute(0, 2, 1)  # (B, C, n): row j's candidates per class
        cand = cand[None].expand(batch, batch, self.num_classes, n)  # (i, j, C, n): row i looks at row j
        earlier = torch.ones(batch, batch, dtype=torch.bool, device=reps.device).tril(-1)  # j < i
        cand = cand.masked_fill(~earlier[:, :, None, None], float("-inf"))
        cand = cand.permute(0, 2, 1, 3).reshape(batch, self.num_classes, batch * n)  # (B, C, B*n)
        pooled = torch.cat([self.scores.expand(batch, -1, -1), cand], dim=2)  # (B, C, s + B*n), bank first
        pooled = pooled.gather(1, order[..., None].expand(-1, -1, pooled.shape[2]))  # (B, K, s + B*n)
        top, idx = pooled.topk(s, dim=2)  # (B, K, s)
        # one table of every entry a row can see: the bank's C*s slots, then the batch's B*n candidates
        table = torch.cat([self.bank.reshape(-1, self.dim), reps.detach().reshape(-1, self.dim).to(self.bank.dtype)])
        source = torch.where(idx < s, order[..., None] * s + idx, self.num_classes * s + idx - s)
        out = table[source.reshape(batch, k * s)]  # (B, K*s, d)
        mask = (valid[..., None] & torch.isfinite(top)).reshape(batch, k * s)
        return out, mask

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, slots={self.slots}, dim={self.dim}"


def _positive_classes(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Each video's ground-truth classes in index order, padded to the most any video has (at least one).

    labels (B, C) -> class indices (B, K) and whether each is a real ground-truth class (B, K) bool.
    """
    positive = labels > 0
    k = max(int(positive.sum(dim=1).max()), 1)
    # positive classes first, in index order: a stable sort on "is negative"
    order = torch.sort((~positive).to(torch.uint8), dim=1, stable=True).indices[:, :k]
    return order, positive.gather(1, order)

