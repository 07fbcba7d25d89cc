"""EM attention (eq. 2-3): convex means, masks, gradients, both initialisations."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rskp_plugin.reference.summarizer import em_step
from rskp_plugin.method.summarizer import EMSummarizer


@given(st.integers(1, 80), st.integers(1, 12), st.integers(1, 3), st.integers(0, 2**16))
def test_means_are_convex_combinations_of_snippets(t, n, iters, seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(1, t, 5, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    means = EMSummarizer(5, n, iters).double()(f)
    # A convex combination lies inside the per-dimension range of the snippets ...
    lo, hi = f.min(dim=1).values, f.max(dim=1).values  # (1, d)
    assert torch.all(means >= lo[:, None] - 1e-12) and torch.all(means <= hi[:, None] + 1e-12)
    # ... and reproduces any feature that is constant over the video exactly.
    const = torch.cat([f, torch.full((1, t, 1), 3.0, dtype=torch.float64)], -1)
    torch.manual_seed(seed)
    out = EMSummarizer(6, n, iters).double()(const)
    torch.testing.assert_close(out[..., -1], torch.full((1, n), 3.0, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("init", ["orthogonal", "xavier"])
def test_padded_batch_equals_single_video(init):
    torch.manual_seed(0)
    s = EMSummarizer(6, 4, 2, init=init).double()
    f = torch.randn(3, 20, 6, dtype=torch.float64)
    lengths = [20, 7, 1]
    mask = torch.arange(20)[None] < torch.tensor(lengths)[:, None]
    batched = s(f, mask)
    for b, length in enumerate(lengths):
        torch.testing.assert_close(batched[b], s(f[b : b + 1, :length])[0], rtol=1e-10, atol=1e-12)


def test_orthogonal_init_is_semi_orthogonal():
    s = EMSummarizer(16, 8)
    gram = s.initial_means @ s.initial_means.T
    torch.testing.assert_close(gram, torch.eye(8), rtol=1e-5, atol=1e-5)


def test_gradcheck_reaches_initial_means_and_features():
    torch.manual_seed(0)
    s = EMSummarizer(4, 3, 2).double()
    f = torch.randn(2, 6, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    assert torch.autograd.gradcheck(lambda x, m0: _with_means(s, m0)(x, mask), (f, s.initial_means.detach().clone()
                                                                               .requires_grad_()))


def _with_means(s, m0):
    def run(x, mask):
        means = m0.expand(x.shape[0], -1, -1)
        for _ in range(s.iterations):
            means = em_step(x, means, temperature=s.temperature, mask=mask)
        return means

    return run


def test_module_gradient_flows_to_initial_means():
    s = EMSummarizer(4, 3)
    s(torch.randn(2, 9, 4)).sum().backward()
    assert s.initial_means.grad is not None and torch.isfinite(s.initial_means.grad).all()
    assert s.initial_means.grad.abs().sum() > 0


def test_bad_width():
    with pytest.raises(ValueError, match="d=4"):
        EMSummarizer(4)(torch.randn(1, 5, 3))


@given(st.lists(st.integers(1, 20), min_size=1, max_size=3), st.integers(1, 6), st.integers(1, 3),
       st.floats(0.5, 10.0), st.integers(0, 2**16))
def test_module_backward_equals_autograd_through_the_em_steps(lengths, n, iterations, temperature, seed):
    """The summariser's hand-written backward gives autograd's gradients of the ``em_step`` loop (float64)."""
    g = torch.Generator().manual_seed(seed)
    tmax, d = max(lengths), 5
    s = EMSummarizer(d, n, iterations, temperature).double()
    mask = torch.arange(tmax)[None] < torch.tensor(lengths)[:, None]
    f = (torch.randn(len(lengths), tmax, d, generator=g, dtype=torch.float64).abs() * mask[..., None]).requires_grad_()
    weight = torch.randn(len(lengths), n, d, generator=g, dtype=torch.float64)
    fast = s(f, mask)
    slow = _with_means(s, s.initial_means)(f, mask)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    grads = [torch.autograd.grad((x * weight).sum(), (f, s.initial_means)) for x in (fast, slow)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_module_gradcheck():
    torch.manual_seed(1)
    s = EMSummarizer(4, 3, 2).double()
    f = torch.randn(2, 6, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    assert torch.autograd.gradcheck(lambda x: s(x, mask), (f,))
