"""BiRW: the Woodbury closed form equals the dense solve of eq. 6 and the converged iteration of eq. 4-5."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rskp_plugin.errors import ShapeError
from rskp_plugin.method.propagation import (
    affinity,
    birw,
    birw_factors,
    birw_walks,
    column_normalize,
)
from rskp_plugin.reference.propagation import birw_dense, birw_official, birw_unrolled


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def _iterations(w: float, tol: float) -> int:
    # the error shrinks by w^2 per round (R is row-stochastic); add slack for the constant
    return int(math.ceil(math.log(tol) / math.log(w * w))) + 20


case = st.fixed_dictionaries(
    {
        "t": st.integers(1, 400),
        "n": st.integers(1, 16),
        "d": st.integers(1, 24),
        "w": st.floats(0.01, 0.95),
        "temperature": st.floats(0.5, 20.0),
        "seed": st.integers(0, 2**16),
    }
)


@given(case)
def test_closed_form_matches_dense_and_unrolled_float64(c):
    g = torch.Generator().manual_seed(c["seed"])
    f = torch.randn(c["t"], c["d"], generator=g, dtype=torch.float64).abs()
    mu = torch.randn(c["n"], c["d"], generator=g, dtype=torch.float64)
    fast = birw(f, mu, c["w"], c["temperature"])
    assert fast.shape == f.shape
    assert _rel(fast, birw_dense(f, mu, c["w"], c["temperature"])) < 1e-10
    unrolled = birw_unrolled(f, mu, c["w"], _iterations(c["w"], 1e-13), c["temperature"])
    assert _rel(fast, unrolled) < 1e-10


@given(case)
def test_closed_form_matches_dense_and_unrolled_float32(c):
    g = torch.Generator().manual_seed(c["seed"])
    f = torch.randn(c["t"], c["d"], generator=g)
    mu = torch.randn(c["n"], c["d"], generator=g)
    fast = birw(f, mu, c["w"], c["temperature"])
    ref = birw_dense(f.double(), mu.double(), c["w"], c["temperature"])
    assert _rel(fast.double(), ref) < 1e-4
    unrolled = birw_unrolled(f, mu, c["w"], _iterations(c["w"], 1e-7), c["temperature"])
    assert _rel(fast, unrolled) < 1e-4


@given(
    st.lists(st.integers(1, 60), min_size=1, max_size=4),
    st.integers(1, 10),
    st.floats(0.05, 0.95),
    st.integers(0, 2**16),
)
def test_padded_batch_equals_each_video_alone(lengths, n, w, seed):
    g = torch.Generator().manual_seed(seed)
    d, tmax = 6, max(lengths)
    f = torch.randn(len(lengths), tmax, d, generator=g, dtype=torch.float64)
    mu = torch.randn(len(lengths), n, d, generator=g, dtype=torch.float64)
    # padded representatives too: each video keeps a random non-empty prefix
    kept = torch.randint(1, n + 1, (len(lengths),), generator=g)
    mask = torch.arange(tmax)[None] < torch.tensor(lengths)[:, None]
    reps_mask = torch.arange(n)[None] < kept[:, None]
    for fn in (birw, birw_dense, lambda *a, **k: birw_unrolled(a[0], a[1], a[2], 300, **k)):
        out = fn(f, mu, w, mask=mask, reps_mask=reps_mask)
        assert torch.all(out[~mask] == 0)
        for b, length in enumerate(lengths):
            alone = fn(f[b, :length], mu[b, : kept[b]], w)
            torch.testing.assert_close(out[b, :length], alone, rtol=1e-9, atol=1e-10)


def test_official_formulation_agrees():
    g = torch.Generator().manual_seed(0)
    f, mu = torch.randn(2, 80, 16, generator=g, dtype=torch.float64), torch.randn(2, 8, 16, generator=g).double()
    torch.testing.assert_close(birw(f, mu), birw_official(f, mu), rtol=1e-10, atol=1e-12)


def test_gradcheck():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(2, 7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    mu = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    assert torch.autograd.gradcheck(lambda a, b: birw(a, b, 0.5, 5.0, mask), (f, mu))
    out = birw(f, mu, 0.5, 5.0, mask)
    out.square().sum().backward()
    assert torch.isfinite(f.grad).all() and torch.isfinite(mu.grad).all()


def test_affinity_rows_and_columns():
    f, mu = torch.randn(1, 9, 5), torch.randn(1, 3, 5)
    mask = torch.tensor([[True] * 6 + [False] * 3])
    z = affinity(f, mu, temperature=5.0, mask=mask)
    torch.testing.assert_close(z[0, :6].sum(-1), torch.ones(6))
    assert torch.all(z[0, 6:] == 0)
    torch.testing.assert_close(column_normalize(z).sum(1), torch.ones(1, 3), rtol=1e-6, atol=1e-6)


def test_w_zero_is_identity_and_one_snippet_video():
    f, mu = torch.randn(5, 4), torch.randn(2, 4)
    torch.testing.assert_close(birw(f, mu, 0.0), f)
    one = torch.randn(1, 4)
    torch.testing.assert_close(birw(one, mu, 0.5), birw_dense(one, mu, 0.5))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"reps": torch.randn(3, 5)}, "reps must have shape"),
        ({"mask": torch.ones(2, 9, dtype=torch.bool)}, "mask must have shape"),
        ({"mask": torch.ones(2, 10)}, "bool"),
        ({"w": 1.0}, r"\[0, 1\)"),
        ({"w": -0.1}, r"\[0, 1\)"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"features": torch.randn(2, 10, 4), "reps": torch.randn(2, 3, 4), "w": 0.5, "mask": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        birw(args["features"], args["reps"], args["w"], mask=args["mask"])


def test_nan_features_rejected():
    f = torch.randn(2, 10, 4)
    f[1, 3, 2] = float("nan")
    with pytest.raises(ShapeError, match="NaN"):
        birw(f, torch.randn(2, 3, 4))


@given(st.lists(st.integers(1, 30), min_size=1, max_size=3), st.integers(1, 6), st.floats(0.05, 0.95),
       st.integers(0, 2**16))
def test_analytic_backward_matches_autograd_of_dense_solve(lengths, n, w, seed):
    g = torch.Generator().manual_seed(seed)
    tmax, d = max(lengths), 5
    f = torch.randn(len(lengths), tmax, d, generator=g, dtype=torch.float64, requires_grad=True)
    mu = torch.randn(len(lengths), n, d, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(tmax)[None] < torch.tensor(lengths)[:, None]
    reps_mask = torch.arange(n)[None] < torch.randint(1, n + 1, (len(lengths),), generator=g)[:, None]
    weight = torch.randn(len(lengths), tmax, d, generator=g, dtype=torch.float64)
    fast = torch.autograd.grad((birw(f, mu, w, mask=mask, reps_mask=reps_mask) * weight).sum(), (f, mu))
    ref = torch.autograd.grad((birw_dense(f, mu, w, mask=mask, reps_mask=reps_mask) * weight).sum(), (f, mu))
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@given(st.lists(st.integers(1, 30), min_size=1, max_size=3), st.integers(1, 6), st.floats(0.05, 0.95),
       st.integers(0, 2**16))
def test_factored_walk_equals_birw_in_values_maps_and_gradients(lengths, n, w, seed):
    """F* = s F + Z M: dense(), linear(), pool() and squared_norms() equal the same maps of ``birw``'s output, and
    the gradients through the factors (analytic backward) equal autograd of the dense solve."""
    g = torch.Generator().manual_seed(seed)
    b, tmax, d, h, k = len(lengths), max(lengths), 5, 3, 2
    f = torch.randn(b, tmax, d, generator=g, dtype=torch.float64).abs().requires_grad_()
    mu = torch.randn(b, n, d, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(tmax)[None] < torch.tensor(lengths)[:, None]
    reps_mask = torch.arange(n)[None] < torch.randint(0, n + 1, (b,), generator=g)[:, None]  # some have none
    weight, bias = torch.randn(h, d, generator=g, dtype=torch.float64), torch.randn(h, generator=g, dtype=torch.float64)
    pool_w = torch.rand(b, tmax, k, generator=g, dtype=torch.float64) * mask[..., None]

    def maps(x):  # (B, T, d) -> the maps a head takes of it, each weighted by a fixed random tensor
        return [torch.nn.functional.linear(x, weight, bias)[mask], torch.einsum("btk,btd->bkd", pool_w, x),
                (x * x).sum(-1)[mask], x]

    walked = birw_factors(f, mu, w, mask=mask, reps_mask=reps_mask)
    base = torch.nn.functional.linear(f, weight, bias)
    fast = [walked.linear(base, weight, bias)[mask], walked.pool(pool_w), walked.squared_norms((f * f).sum(-1))[mask],
            walked.dense()]
    slow = maps(birw_dense(f, mu, w, mask=mask, reps_mask=reps_mask))
    for a, ref in zip(fast, slow):
        torch.testing.assert_close(a, ref, rtol=1e-9, atol=1e-10)
    # the products of F a caller may take together with others give the same maps
    base_pool = torch.bmm((pool_w * walked.scale[..., None]).transpose(1, 2), f)
    torch.testing.assert_close(walked.pool(pool_w, base=base_pool), slow[1], rtol=1e-9, atol=1e-10)
    cross = torch.bmm(f, walked.m.transpose(1, 2))
    torch.testing.assert_close(walked.squared_norms((f * f).sum(-1), cross=cross)[mask], slow[2], rtol=1e-9, atol=1e-10)
    coefs = [torch.randn(x.shape, generator=g, dtype=torch.float64) for x in slow]
    grads = [torch.autograd.grad(sum((x * c).sum() for x, c in zip(xs, coefs)), (f, mu), retain_graph=True)
             for xs in (fast, slow)]
    for a, ref in zip(*grads):
        torch.testing.assert_close(a, ref, rtol=1e-8, atol=1e-10)
    assert not bool(walked.dense()[~mask].any())  # padded rows of F* are zero, as birw's


def test_factored_walk_needs_a_batch_axis():
    with pytest.raises(ShapeError, match="batched"):
        birw_factors(torch.randn(5, 3), torch.randn(2, 3))


def test_autocast_runs_the_walk_in_float32_on_the_cpu_too():
    """bfloat16 autocast (CPU here; CUDA takes the same path) must not reach the n x n solve or the backward."""
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 9, 6, generator=g).abs().requires_grad_()
    mu = torch.randn(2, 3, 6, generator=g, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = f.to(torch.bfloat16)  # a bfloat16 activation, as an autocast layer gives
        out, walked = birw(low, mu), birw_factors(low, mu)
    assert out.dtype == walked.z.dtype == walked.m.dtype == torch.float32
    ref = birw(low.detach().float(), mu.detach())
    torch.testing.assert_close(out.detach(), ref)
    torch.testing.assert_close(walked.dense().detach(), ref)
    (out.sum() + walked.dense().sum()).backward()
    assert bool(torch.isfinite(f.grad).all()) and bool(torch.isfinite(mu.grad).all())


@given(st.lists(st.integers(1, 25), min_size=1, max_size=3), st.lists(st.integers(1, 7), min_size=1, max_size=3),
       st.floats(0.05, 0.95), st.integers(0, 2**16))
def test_walks_at_once_equal_each_walk_alone(lengths, ns, w, seed):
    """birw_walks shares the products with F between walks; values and gradients are each walk's own."""
    g = torch.Generator().manual_seed(seed)
    b, tmax, d = len(lengths), max(lengths), 4
    f = torch.randn(b, tmax, d, generator=g, dtype=torch.float64).abs().requires_grad_()
    mask = torch.arange(tmax)[None] < torch.tensor(lengths)[:, None]
    walks = []
    for j, n in enumerate(ns):
        reps = torch.randn(b, n, d, generator=g, dtype=torch.float64, requires_grad=True)
        reps_mask = None if j == 0 else torch.arange(n)[None] < torch.randint(0, n + 1, (b,), generator=g)[:, None]
        walks.append((reps, reps_mask))
    together = birw_walks(f, walks, w, mask=mask)
    alone = [birw_factors(f, r, w, mask=mask, reps_mask=m) for r, m in walks]
    coefs = [torch.randn(b, tmax, d, generator=g, dtype=torch.float64) for _ in walks]
    for x, y in zip(together, alone):
        torch.testing.assert_close(x.z, y.z, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(x.m, y.m, rtol=1e-10, atol=1e-11)
    inputs = [f] + [r for r, _ in walks]
    grads = [torch.autograd.grad(sum((p.dense() * c).sum() for p, c in zip(ps, coefs)), inputs)
             for ps in (together, alone)]
    for x, y in zip(*grads):
        torch.testing.assert_close(x, y, rtol=1e-8, atol=1e-10)



@given(st.lists(st.integers(1, 70), min_size=1, max_size=3), st.lists(st.integers(1, 6), min_size=1, max_size=2),
       st.floats(0.05, 0.95), st.sampled_from([1, 300, 5000]), st.integers(0, 2**16))
def test_cholesky_form_streamed_in_blocks_matches_unrolled_and_dense_solve(lengths, ns, w, chunk, seed):
    """The SPD form (C = D - w^2 Z^T Z, one Cholesky factor for forward and backward) read block by block: F* equals
    the unrolled iteration of eq. 4-5 and the dense solve of eq. 6, and its gradients (birw and the factored walks)
    equal autograd of the dense solve; ``chunk`` bytes per block: one row, a few rows or several videos per block."""
    import rskp_plugin.method.birw_kernels as birw_kernels

    g = torch.Generator().manual_seed(seed)
    b, tmax, d = len(lengths), max(lengths), 5
    f = torch.randn(b, tmax, d, generator=g, dtype=torch.float64).abs().requires_grad_()
    mask = torch.arange(tmax)[None] < torch.tensor(lengths)[:, None]
    walks = [(torch.randn(b, n, d, generator=g, dtype=torch.float64, requires_grad=True),
              None if j == 0 else torch.arange(n)[None] < torch.randint(0, n + 1, (b,), generator=g)[:, None])
             for j, n in enumerate(ns)]
    mu, reps_mask = walks[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(birw_kernels, "CHUNK_BYTES", chunk)
        patch.setattr(birw_kernels, "CHUNK_ROWS", 1)
        assert chunk > 1 or len(birw_kernels._blocks(f)) == b * tmax  # one snippet per block
        fast = birw(f, mu, w, mask=mask, reps_mask=reps_mask)
        weight = torch.randn(f.shape, generator=g, dtype=torch.float64)
        got = torch.autograd.grad((fast * weight).sum(), (f, mu))
        together = birw_walks(f, walks, w, mask=mask)
        coefs = [torch.randn(f.shape, generator=g, dtype=torch.float64) for _ in walks]
        inputs = [f] + [r for r, _ in walks]
        got_walks = torch.autograd.grad(sum((p.dense() * c).sum() for p, c in zip(together, coefs)), inputs)
    dense = birw_dense(f, mu, w, mask=mask, reps_mask=reps_mask)
    unrolled = birw_unrolled(f, mu, w, _iterations(w, 1e-14), mask=mask, reps_mask=reps_mask)
    assert _rel(fast, dense) < 1e-10 and _rel(fast, unrolled) < 1e-10
    for a, ref in zip(got, torch.autograd.grad((dense * weight).sum(), (f, mu))):
        torch.testing.assert_close(a, ref, rtol=1e-8, atol=1e-10)
    want = torch.autograd.grad(sum((birw_dense(f, r, w, mask=mask, reps_mask=m) * c).sum()
                                   for (r, m), c in zip(walks, coefs)), inputs)
    for x, y in zip(got_walks, want):
        torch.testing.assert_close(x, y, rtol=1e-8, atol=1e-10)
