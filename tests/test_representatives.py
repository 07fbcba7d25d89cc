"""rskp.summarizer.method / region (paper Tables 3-4, supplement Table 2): each variant trains on every built-in head,
pads like one video at a time, and makes the representatives its table describes; the default is today's EM."""

from __future__ import annotations

import pytest
import torch

from rskp_plugin.propagation import birw_factors


@pytest.mark.parametrize("masked", [True, False])
def test_a_zero_representative_gets_a_finite_gradient(masked):
    """A missing representative (zeros, masked) or a snippet whose embedding is all zero (a ReLU's), walked as a
    representative: the derivative of mu / (|mu| + eps) at mu = 0 is I / eps, not NaN."""
    g = torch.Generator().manual_seed(0)
    f = torch.randn(1, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    reps = torch.randn(1, 3, 4, generator=g, dtype=torch.float64)
    reps[:, 2] = 0.0
    reps.requires_grad_(True)
    reps_mask = torch.tensor([[True, True, not masked]])
    walked = birw_factors(f, reps, reps_mask=reps_mask)
    (walked.dense() ** 2).sum().backward()
    assert torch.isfinite(f.grad).all() and torch.isfinite(reps.grad).all()


def test_em_of_all_zero_features_gets_a_finite_gradient():
    """A region with S = 0 everywhere (background of a video the attention calls all foreground) summarises zeros."""
    from rskp_plugin.summarizer import EMSummarizer

    f = torch.zeros(1, 5, 4, dtype=torch.float64, requires_grad=True)
    EMSummarizer(4, 3).double()(f).sum().backward()
    assert torch.isfinite(f.grad).all()
