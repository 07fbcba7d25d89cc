"""Per-class memory bank of representative snippets (paper 3.2)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ._shapes import expect


class MemoryBank(nn.Module):
    """Keeps, for each class, the ``slots`` representative snippets with the highest score for that class.

    The table M (C, s, d) and its scores (C, s) are buffers, so they travel with ``state_dict`` and ``.to()``.
    Unfilled slots have score -inf and are never retrieved. The kept set is the top-s of every candidate ever
    offered for the class, so it does not depend on the update order (up to exact score ties).

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

    def reset(self) -> None:
        self.bank.zero_()
        self.scores.fill_(float("-inf"))
        self.ready.fill_(False)

    @property
    def filled(self) -> Tensor:
        """(C, s) bool: which slots hold a snippet."""
        return torch.isfinite(self.scores)

    @torch.no_grad()
    def update(self, reps: Tensor, scores: Tensor, labels: Tensor) -> None:
        """Offer each video's representative snippets to the classes it is labelled with.

        For every ground-truth class c of a video, its n snippets compete with the stored s entries of class c on
        their class-c score; the top s are kept (entries and scores). Under torch.distributed every rank gathers
        all ranks' candidates first, so all banks stay identical.

        Args:
            reps: (B, n, d) representative snippets (detached).
            scores: (B, n, C) their class probabilities (the head's classifier).
            labels: (B, C) multi-hot ground truth.
        """
        sizes = expect(reps, "B n d", name="reps", sizes={"d": self.dim})
        expect(scores, "B n C", name="scores", sizes={**sizes, "C": self.num_classes})
        expect(labels, "B C", name="labels", sizes={**sizes, "C": self.num_classes})
        reps, scores, labels = reps.detach(), scores.detach(), labels.detach()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            reps, scores, labels = (_all_gather_cat(x) for x in (reps, scores, labels))
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

    def retrieve(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The stored snippets of each video's ground-truth classes, concatenated in class-index order.

        Args:
            labels: (B, C) multi-hot.

        Returns:
            reps (B, K*s, d) and reps_mask (B, K*s) bool, K = the most classes any video of the batch has;
            videos with fewer classes and unfilled slots are padded (mask False).
        """
        expect(labels, "B C", name="labels", sizes={"C": self.num_classes})
        positive = labels > 0
        k = max(int(positive.sum(dim=1).max()), 1)
        # Positive classes first, in index order: a stable sort on "is negative".
        order = torch.sort((~positive).to(torch.uint8), dim=1, stable=True).indices[:, :k]  # (B, K)
        valid = positive.gather(1, order)  # (B, K)
        reps = self.bank[order].reshape(labels.shape[0], k * self.slots, self.dim)  # (B, K*s, d)
        mask = (valid[..., None] & self.filled[order]).reshape(labels.shape[0], k * self.slots)
        return reps, mask

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, slots={self.slots}, dim={self.dim}"


def _all_gather_cat(x: Tensor) -> Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
