"""Shape checks at public boundaries (public: heads use them too): ``expect(x, "B T d", name="features")`` binds
letters to sizes."""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import ShapeError


def expect(x: Tensor, spec: str, *, name: str, sizes: dict[str, int] | None = None) -> dict[str, int]:
    """Check that ``x`` has one axis per letter group of ``spec`` and that repeated letters agree.

    Args:
        x: the tensor to check.
        spec: space-separated axis names, e.g. ``"B T d"``; an integer literal fixes a size.
        name: how the tensor is called in the error message.
        sizes: sizes already bound by earlier checks (updated in place and returned).

    Returns:
        The mapping from axis names to sizes.
    """
    sizes = {} if sizes is None else sizes
    axes = spec.split()
    if not isinstance(x, Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor of shape ({', '.join(axes)}), got {type(x).__name__}")
    if x.dim() != len(axes):
        raise ShapeError(f"{name} must have shape ({', '.join(axes)}), got {tuple(x.shape)}")
    for axis, size in zip(axes, x.shape):
        want = int(axis) if axis.isdigit() else sizes.get(axis)
        if want is not None and want != size:
            bound = ", ".join(f"{k}={v}" for k, v in sizes.items())
            raise ShapeError(
                f"{name} must have shape ({', '.join(axes)}) with {axis}={want} ({bound}), got {tuple(x.shape)}"
            )
        if not axis.isdigit():
            sizes[axis] = size
    return sizes


def expect_finite(x: Tensor, *, name: str) -> None:
    """Raise ``ShapeError`` if ``x`` holds NaN or Inf (one reduction, no host sync beyond the bool).

    The reduction is a sum (one read of ``x``, no temporary of its size): NaN or Inf anywhere makes it non-finite;
    only then, or when finite values overflow it, is ``x`` checked element by element."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    if x.is_floating_point() and not bool(torch.isfinite(x.sum(dtype=acc))) and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ShapeError(f"{name} holds {bad} NaN/Inf values; check the input features for corrupt entries")


def as_mask(mask: Tensor | None, batch: int, length: int, device: torch.device, *, name: str = "mask") -> Tensor:
    """Return a (B, T) bool mask; ``None`` means every snippet is valid."""
    if mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    if mask.shape != (batch, length):
        raise ShapeError(f"{name} must have shape (B, T) = ({batch}, {length}), got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ShapeError(f"{name} must be a bool tensor (True = real snippet, False = padding), got {mask.dtype}")
    return mask
