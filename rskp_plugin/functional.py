"""Masked temporal pooling shared by heads and losses. mask (B, T) is True on real snippets, False on padding."""

from __future__ import annotations

import torch
from torch import Tensor


def valid_lengths(mask: Tensor) -> Tensor:
    """Number of real snippets per video: mask (B, T) -> (B,) long."""
    return mask.sum(dim=1)


def topk_counts(mask: Tensor, ratio: int, minimum: int = 1) -> Tensor:
    """Per-video k = max(len // ratio, minimum), never above len: mask (B, T) -> (B,) long."""
    lengths = valid_lengths(mask)
    return torch.minimum(torch.clamp(lengths // ratio, min=minimum), lengths.clamp(min=1))


def _expand(mask: Tensor, x: Tensor) -> Tensor:
    return mask.reshape(mask.shape + (1,) * (x.dim() - 2))  # (B, T, 1, ...) broadcastable to x


def masked_topk_mean(x: Tensor, mask: Tensor, k: Tensor, *, largest: bool = True) -> Tensor:
    """Mean of the k largest (or smallest) values over time, per video and channel.

    Args:
        x: (B, T, ...) values.
        mask: (B, T) bool.
        k: (B,) long, 1 <= k <= valid length (use ``topk_counts``).
        largest: largest values if True, smallest otherwise.

    Returns:
        (B, ...) means. Padded snippets never take part, so the result equals the unpadded video's.
    """
    fill = torch.finfo(x.dtype).min if largest else torch.finfo(x.dtype).max
    filled = x.masked_fill(~_expand(mask, x), fill)
    kmax = int(k.max())
    top = filled.topk(kmax, dim=1, largest=largest).values  # (B, kmax, ...)
    ranks = torch.arange(kmax, device=x.device).reshape((1, kmax) + (1,) * (x.dim() - 2))
    keep = ranks < k.reshape((-1, 1) + (1,) * (x.dim() - 2))  # (B, kmax, 1, ...)
    total = torch.where(keep, top, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)
    return total / k.reshape((-1,) + (1,) * (x.dim() - 2)).to(x.dtype)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over real snippets: x (B, T, ...), mask (B, T) -> (B, ...)."""
    m = _expand(mask, x).to(x.dtype)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)


def masked_sum(x: Tensor, mask: Tensor) -> Tensor:
    """Sum over real snippets: x (B, T, ...), mask (B, T) -> (B, ...)."""
    return (x * _expand(mask, x).to(x.dtype)).sum(dim=1)


def masked_softmax(x: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Softmax over time with padded snippets at probability 0: x (B, T, ...) -> (B, T, ...)."""
    if dim != 1:
        raise ValueError("masked_softmax pools over time, dim=1")
    filled = x.masked_fill(~_expand(mask, x), float("-inf"))
    return torch.softmax(filled, dim=1).nan_to_num(0.0)
