"""Masked temporal pooling and the embedding/affine stems shared by heads and losses (public: third-party heads
use them as the built-in ones do). mask (B, T) is True on real snippets, False on padding."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .shapes import as_mask, expect


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


def masked_gaussian_smooth(x: Tensor, mask: Tensor, *, sigma: float = 1.0, truncate: float = 4.0) -> Tensor:
    """Gaussian smoothing over time of each video's real snippets only, like ``scipy.ndimage.gaussian_filter1d``.

    The kernel has radius ``int(truncate * sigma + 0.5)`` and is normalised to sum 1; each video is extended at both
    ends by reflection about the edge (scipy's ``mode="reflect"``: ``d c b a | a b c d | d c b a``), so padded
    snippets never leak in and a padded batch equals each video alone. Real snippets need not be a prefix: they are
    smoothed as one sequence in time order.

    Args:
        x: (B, T, ...) values.
        mask: (B, T) bool.
        sigma: standard deviation of the kernel, in snippets.
        truncate: radius in standard deviations.

    Returns:
        (B, T, ...) smoothed values, zero on padding.
    """
    batch, length = mask.shape
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=x.device)  # (K,)
    weights = torch.exp(-0.5 * (offsets.to(x.dtype) / sigma) ** 2)
    weights = weights / weights.sum()
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # (B, T): real snippets first, in time order
    lengths = valid_lengths(mask).clamp(min=1).reshape(batch, 1, 1)  # (B, 1, 1)
    pos = torch.arange(length, device=x.device).reshape(1, length, 1) + offsets.reshape(1, 1, -1)  # (1, T, K)
    r = torch.remainder(pos, 2 * lengths)  # (B, T, K): position in one period of the reflected sequence
    src = torch.where(r >= lengths, 2 * lengths - 1 - r, r)  # (B, T, K): index into the compacted sequence
    idx = torch.gather(order, 1, src.reshape(batch, -1))  # (B, T*K): original time index of each tap
    flat = x.reshape(batch, length, -1)  # (B, T, F)
    taps = torch.gather(flat, 1, idx.unsqueeze(-1).expand(-1, -1, flat.shape[-1]))  # (B, T*K, F)
    taps = taps.reshape(batch, length, offsets.numel(), -1)  # (B, T, K, F)
    smooth = (taps * weights.reshape(1, 1, -1, 1)).sum(dim=2)  # (B, T, F), row j = j-th real snippet
    out = torch.zeros_like(flat).scatter(1, order.unsqueeze(-1).expand_as(flat), smooth)  # back to time order
    return out.reshape(x.shape) * _expand(mask, x).to(x.dtype)


class _DropoutMultiplier(torch.autograd.Function):
    """y * m with m = keep / (1 - p) [* (y > 0)] [* mask], m saved for the backward (one pass each way)."""

    @staticmethod
    def forward(ctx, y, p, relu, mask):  # type: ignore[override]
        # uniform draws in float32 whatever y's dtype: a bfloat16 uniform has too few levels for a fair keep rate
        m = torch.rand(y.shape, dtype=torch.float32, device=y.device).ge_(p).to(y.dtype)
        if relu:
            m.mul_(y > 0)
        if mask is not None:
            m.mul_(mask[..., None].to(y.dtype))
        m.mul_(1.0 / (1.0 - p))
        ctx.save_for_backward(m)
        return y * m

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        (m,) = ctx.saved_tensors
        return grad * m, None, None, None


def _check_p(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must lie in [0, 1), got {p}")


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``nn.functional.dropout`` with the mask drawn from uniforms (the same distribution: keep 1 - p, scale
    1 / (1 - p)), several times faster than its ``bernoulli_`` on the CPU. x (...) -> (...)."""
    _check_p(p)
    if not training or p == 0.0:
        return x
    return _DropoutMultiplier.apply(x, float(p), False, None)


def relu_dropout(y: Tensor, p: float, training: bool, mask: Tensor) -> Tensor:
    """Dropout(ReLU(y)) zeroed on padding, the embedding activation of FAC-Net, STPN and BM, in one pass.

    The same distribution as ``nn.Dropout(p)(torch.relu(y)) * mask[..., None]`` (each unit kept with probability
    1 - p and scaled by 1 / (1 - p)), from uniform draws instead of ``bernoulli_``, which is several times slower
    on the CPU; forward and backward each read and write the (B, T, d) data once.

    Args:
        y: (B, T, d) pre-activation.
        p: drop probability in [0, 1).
        training: draw dropout only in training mode.
        mask: (B, T) bool, True on real snippets.

    Returns:
        (B, T, d).
    """
    _check_p(p)
    if not training or p == 0.0:
        return torch.relu(y) * mask[..., None].to(y.dtype)
    return _DropoutMultiplier.apply(y, float(p), True, mask)


def embed_linear(features: Tensor, mask: Tensor | None, layer: nn.Linear, p: float, training: bool) -> Tensor:
    """The embedding stem of FAC-Net, STPN and BM: X = Dropout(ReLU(W_e F + b_e)), zero on padding (``relu_dropout``).

    Args:
        features: (B, T, D) backbone features, D = ``layer.in_features`` (checked).
        mask: (B, T) bool, True on real snippets (None: all real).
        layer: the embedding ``nn.Linear(D, d)``.
        p: dropout probability in [0, 1); training: draw dropout only in training mode.

    Returns:
        (B, T, d).
    """
    sizes = expect(features, "B T D", name="features", sizes={"D": layer.in_features})
    mask = as_mask(mask, sizes["B"], sizes["T"], features.device)
    return relu_dropout(layer(features), p, training, mask)


def stack_affine(layers: Sequence[nn.Linear]) -> tuple[Tensor, Tensor]:
    """The affine maps a head applies to its input x, stacked into one: (sum h_i, d) weight and (sum h_i,) bias.

    One product ``F.linear(x, *stack_affine(layers))`` then serves every layer (``protocols.affine_branches``
    shares it between RSKP's branches); ``split([l.out_features for l in layers], dim=-1)`` recovers each.
    """
    return torch.cat([layer.weight for layer in layers]), torch.cat([layer.bias for layer in layers])
