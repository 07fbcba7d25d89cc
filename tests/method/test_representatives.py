"""rskp.summarizer.method / region (paper Tables 3-4, supplement Table 2): each variant trains on every built-in head,
pads like one video at a time, and makes the representatives its table describes; the default is today's EM."""

from __future__ import annotations

import sys

import attrs
import pytest
import torch
from _toy import ToyHead, labelled_batch

import rskp_heads.bm
import rskp_heads.facnet
import rskp_heads.stpn
import rskp_heads.wum
from rskp_plugin import RSKPConfig, RSKPWrapper
from rskp_plugin.config import SUMMARIZER_METHODS, SummarizerConfig
from rskp_plugin.config_io import apply_overrides
from rskp_plugin.errors import ConfigError, MissingDependencyError
from rskp_plugin.method.propagation import affinity, birw, birw_factors
from rskp_plugin.protocols import HeadOutput
from rskp_plugin.method.representatives import (
    agglomerative,
    cluster_means,
    discriminative,
    extremes,
    foreground_scores,
    kmeans,
    spectral,
)

HEADS = {
    "facnet": lambda: rskp_heads.facnet.FACNetHead(num_classes=3, feature_dim=8, embed_dim=8, dropout=0.0),
    "stpn": lambda: rskp_heads.stpn.STPNHead(num_classes=3, feature_dim=8, embed_dim=8, dropout=0.0),
    "bm": lambda: rskp_heads.bm.BMHead(num_classes=3, feature_dim=8, embed_dim=8, dropout=0.0),
    "wum": lambda: rskp_heads.wum.WUMHead(num_classes=3, feature_dim=8, embed_dim=8, dropout=0.0,
                                          magnitude_dropout=0.0),
}
SKLEARN = ("agglomerative", "spectral")
# every method over all snippets; the regions with EM (supplement Table 2) and with a clustering and F itself
VARIANTS = [(m, "all") for m in SUMMARIZER_METHODS] + [
    ("em", "foreground"), ("em", "background"), ("kmeans", "foreground"), ("features", "background"),
]
LENGTHS = [11, 4, 1, 7]  # n = 5 representatives: two videos are shorter, one has a single snippet


def _needs_sklearn(method):
    if method in SKLEARN:
        pytest.importorskip("sklearn", reason='the "clustering" extra (scikit-learn) is not installed')




def _model(factory, method="em", region="all", n=5, memory=True, overrides=()):
    torch.manual_seed(0)
    head = factory()
    summarizer = SummarizerConfig(num_representatives=n, method=method, region=region)
    cfg = attrs.evolve(RSKPConfig(), summarizer=summarizer)
    cfg = apply_overrides(attrs.evolve(cfg, memory=attrs.evolve(cfg.memory, enabled=memory)), list(overrides))
    return RSKPWrapper(head, cfg).double()


# the representatives' variants under the propagation ablations (rskp.propagation, rskp.losses.feature_loss)
COMBINED = [
    ("kmeans", "all", ("propagation.method=random_walk",)),
    ("em", "foreground", ("propagation.method=unrolled", "propagation.steps=2")),
    ("discriminative", "background", ("propagation.method=scores",)),
    ("features", "all", ("propagation.inter_fusion=early",)),
    ("extremes", "foreground", ("losses.feature_loss=l2",)),
]


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("method, region, overrides", [(m, r, ()) for m, r in VARIANTS] + COMBINED)
def test_variant_trains_and_pads_like_one_video_at_a_time(head, method, region, overrides):
    _needs_sklearn(method)
    model = _model(HEADS[head], method, region, overrides=overrides)
    x, mask, labels = labelled_batch(LENGTHS, seed=1)
    model.initialize_memory([(x, mask, labels)])
    assert model.memory_ready
    # a wrapped training step: finite loss, finite gradients, the inter branch on
    model.train()
    out = model(x, mask, labels)
    early = "propagation.inter_fusion=early" in overrides  # one walk over [mu^a; mu^e]: no separate inter branch
    assert (out.inter is None) == early and torch.isfinite(out.loss)
    out.loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
    assert ("summarizer.initial_means" in grads) == (method == "em")  # only EM learns mu0 by gradient
    # a padded batch gives each video's numbers alone (outputs of every branch and the losses)
    model.eval()
    batched = model(x, mask, labels)
    singles = [model(x[b : b + 1, :n], None, labels[b : b + 1]) for b, n in enumerate(LENGTHS)]
    for b, (n, one) in enumerate(zip(LENGTHS, singles)):
        for branch in ("main", "intra", "inter") if batched.inter is not None else ("main", "intra"):
            got, want = getattr(batched, branch), getattr(one, branch)
            torch.testing.assert_close(got.tcam[b, :n], want.tcam[0], rtol=1e-9, atol=1e-10)
            torch.testing.assert_close(got.video_scores[b], want.video_scores[0], rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(batched.cas[b, :n], one.cas[0], rtol=1e-9, atol=1e-10)
    for key in batched.losses:
        mean = torch.stack([one.losses[key] for one in singles]).mean()
        torch.testing.assert_close(batched.losses[key], mean, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_default_is_em_attention_and_the_factored_walk_of_today(head):
    """The defaults run today's path: mu^a = EMSummarizer(F), the intra branch is the head on eq. 6 of them, and a
    head with ``forward_branches`` gets the walked branches from one call (also where they run on copies)."""
    assert SummarizerConfig().method == "em" and SummarizerConfig().region == "all"
    model = _model(HEADS[head], memory=False).eval()
    h, calls = model.head, []
    if hasattr(h, "forward_branches"):
        own = h.forward_branches
        h.forward_branches = lambda *args: calls.append(1) or own(*args)
    x, mask, labels = labelled_batch(LENGTHS, seed=2)
    out = model(x, mask, labels)
    feats = h.embed(x, mask)
    reps = model.summarizer(feats, mask)
    # the wrapper makes F contiguous first (a convolution's F is a transposed view): equal up to summation order
    torch.testing.assert_close(out.representatives, reps, rtol=1e-12, atol=1e-14)
    walked = birw_factors(feats, reps, 0.5, 5.0, mask).dense()
    torch.testing.assert_close(out.intra.tcam, h(walked, mask).tcam, rtol=1e-10, atol=1e-12)
    assert len(calls) == (1 if hasattr(h, "forward_branches") else 0)


def test_unknown_values_name_the_valid_ones():
    with pytest.raises(ConfigError, match="summarizer.method.*'em', 'em_nograd', 'kmeans'.*got 'kmean'"):
        apply_overrides(RSKPConfig(), ["summarizer.method=kmean"])
    with pytest.raises(ConfigError, match="summarizer.region.*'all', 'foreground', 'background'"):
        apply_overrides(RSKPConfig(), ["summarizer.region=fore"])
    cfg = apply_overrides(RSKPConfig(), ["summarizer.method=kmeans", "summarizer.region=background"])
    assert (cfg.summarizer.method, cfg.summarizer.region) == ("kmeans", "background")


@pytest.mark.parametrize("method", SKLEARN)
def test_missing_scikit_learn_names_the_extra(monkeypatch, method):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "rskp-plugin\[clustering\]"'):
        _model(ToyHead, method)


def _blobs(sizes, dim=4, seed=0):
    """Snippets in tight, well separated blobs, interleaved in time: (1, T, d) and each snippet's blob (T,)."""
    g = torch.Generator().manual_seed(seed)
    blob = torch.cat([torch.full((s,), i) for i, s in enumerate(sizes)])
    blob = blob[torch.randperm(len(blob), generator=g)]
    centres = 10.0 * torch.randn(len(sizes), dim, generator=g, dtype=torch.float64)
    x = centres[blob] + 0.01 * torch.randn(len(blob), dim, generator=g, dtype=torch.float64)
    return x[None], blob


@pytest.mark.parametrize("method", ["kmeans", "agglomerative", "spectral"])
def test_clustering_representatives_are_the_blob_means(method):
    _needs_sklearn(method)
    x, blob = _blobs([6, 3, 5])
    mask = torch.ones(1, x.shape[1], dtype=torch.bool)
    fn = {"kmeans": kmeans, "agglomerative": agglomerative, "spectral": spectral}[method]
    reps, reps_mask = fn(x, mask, 3)
    assert reps_mask.all()
    # clusters are numbered by their first snippet in time
    first = [int(blob[0])] + [int(b) for i, b in enumerate(blob) if i and b not in blob[:i]]
    expected = torch.stack([x[0, blob == b].mean(dim=0) for b in first])
    torch.testing.assert_close(reps[0], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fn(x, mask, 3)[0], reps, rtol=0, atol=0)  # no random draw


def test_kmeans_gradient_is_that_of_the_cluster_means():
    x, blob = _blobs([4, 2])
    x.requires_grad_(True)
    reps, _ = kmeans(x, torch.ones(1, 6, dtype=torch.bool), 2)
    weights = torch.tensor([[1.0], [3.0]], dtype=torch.float64)  # d(sum_k w_k mu_k)/df_t = w_k / |cluster k|
    (reps[0] * weights).sum().backward()
    order = [int(blob[0]), 1 - int(blob[0])]
    expected = torch.stack([weights[order.index(int(b)), 0] / (blob == b).sum() for b in blob])
    torch.testing.assert_close(x.grad[0], expected[:, None].expand(-1, 4).to(x.dtype))


@pytest.mark.parametrize("method", ["kmeans", "agglomerative", "spectral"])
def test_short_videos_give_their_snippets_and_mask_the_rest(method):
    _needs_sklearn(method)
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    fn = {"kmeans": kmeans, "agglomerative": agglomerative, "spectral": spectral}[method]
    reps, reps_mask = fn(x, mask, 5)
    assert reps_mask.tolist() == [[True] * 3 + [False] * 2, [True] + [False] * 4]
    torch.testing.assert_close(reps[0, :3], x[0])
    torch.testing.assert_close(reps[1, 0], x[1, 0])
    assert (reps[~reps_mask] == 0).all()


def test_cluster_means_masks_empty_clusters():
    x = torch.arange(8.0).reshape(1, 4, 2)
    reps, reps_mask = cluster_means(x, torch.tensor([[2, 2, 0, -1]]), 3)  # numbered by first snippet, empty last
    torch.testing.assert_close(reps[0], torch.tensor([[1.0, 2.0], [4.0, 5.0], [0.0, 0.0]]))
    assert reps_mask.tolist() == [[True, True, False]]


def test_discriminative_takes_the_top_scoring_snippets_in_order():
    x = torch.randn(2, 6, 3)
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.9, 0.2, 0.7], [0.3, 0.8, 9.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[True] * 6, [True, True] + [False] * 4])
    reps, reps_mask = discriminative(x, mask, scores, 3)
    torch.testing.assert_close(reps[0], x[0, [1, 3, 5]])  # ties in time order
    torch.testing.assert_close(reps[1, :2], x[1, [1, 0]])  # padding never chosen, however high its score
    assert reps_mask.tolist() == [[True] * 3, [True, True, False]] and (reps[1, 2] == 0).all()


@pytest.mark.parametrize("n, length, top, bottom", [(4, 9, [6, 2], [0, 4]), (5, 9, [6, 2, 8], [0, 4]),
                                                    (4, 3, [2, 1], [0]), (4, 1, [0], [])])
def test_extremes_take_the_top_and_bottom_snippets(n, length, top, bottom):
    scores = torch.tensor([0.0, 0.4, 0.8, 0.5, 0.1, 0.3, 0.9, 0.2, 0.7])[None, :length]
    x = torch.randn(1, length, 3)
    reps, reps_mask = extremes(x, torch.ones(1, length, dtype=torch.bool), scores, n)
    chosen = top + bottom  # the highest first, then the lowest from the bottom up
    k = (n + 1) // 2
    want_mask = [i < len(top) for i in range(k)] + [i < len(bottom) for i in range(n - k)]
    assert reps_mask[0].tolist() == want_mask
    torch.testing.assert_close(reps[0, reps_mask[0]], x[0, chosen])


def test_features_walks_the_video_over_its_own_snippets():
    """Table 3 "replace mu^a with F": the intra branch is the head on eq. 6 with mu = F and the video's mask."""
    model = _model(ToyHead, "features", memory=False).eval()
    head = model.head
    x, mask, labels = labelled_batch([9, 4], seed=3)
    out = model(x, mask, labels)
    feats = head.embed(x, mask)
    torch.testing.assert_close(out.representatives, feats)
    walked = birw(feats, feats, 0.5, 5.0, mask, reps_mask=mask)
    torch.testing.assert_close(out.intra.tcam, head(walked, mask).tcam)


@pytest.mark.parametrize("region", ["foreground", "background"])
@pytest.mark.parametrize("walk", ["birw", "random_walk"])
def test_region_walks_the_modulated_features_and_adds_the_rest_back(region, walk):
    """Supplement Table 2: F_S = F S summarised (EM) and walked (eq. 6, or another rskp.propagation walk), F (1 - S)
    added back; S detached."""
    model = _model(ToyHead, "em", region, memory=False, overrides=[f"propagation.method={walk}"]).eval()
    head = model.head
    x, mask, labels = labelled_batch([9, 4], seed=4)
    out = model(x, mask, labels)
    feats = head.embed(x, mask)
    s = head(feats, mask).attention * mask
    s = s if region == "foreground" else (1.0 - s) * mask
    f_s = feats * s[..., None]
    reps = model.summarizer(f_s, mask)
    torch.testing.assert_close(out.representatives, reps)
    walked = birw(f_s, reps, 0.5, 5.0, mask) if walk == "birw" else affinity(f_s, reps, temperature=5.0,
                                                                              mask=mask) @ reps  # Z mu
    expected = walked + feats * (1.0 - s)[..., None]
    torch.testing.assert_close(out.intra.tcam, head(expected, mask).tcam)
    sel = model.representatives.select(feats, mask, head(feats, mask))
    assert not sel.region.requires_grad


def test_scores_fall_back_to_the_largest_class_probability():
    cas = torch.tensor([[[0.2, 0.7], [0.4, 0.1], [0.9, 0.9]]])
    main = HeadOutput(torch.zeros(1, 2), torch.zeros(1, 3, 3), None, cas.requires_grad_())
    scores = foreground_scores(main, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(scores, torch.tensor([[0.7, 0.4, 0.0]]))
    assert not scores.requires_grad


def test_em_without_backpropagation_gives_em_numbers_without_their_gradient():
    x, mask, labels = labelled_batch([8, 5])
    em, nograd = _model(ToyHead, "em"), _model(ToyHead, "em_nograd")
    a, b = em(x, mask, labels), nograd(x, mask, labels)
    torch.testing.assert_close(a.representatives, b.representatives, rtol=0, atol=0)
    assert a.representatives.requires_grad and not b.representatives.requires_grad
    b.loss.backward()
    assert nograd.summarizer.initial_means.grad is None


@pytest.mark.parametrize("method, region, overrides", [
    ("discriminative", "all", ()), ("kmeans", "all", ()), ("features", "all", ()), ("em", "foreground", ()),
    ("kmeans", "background", ("propagation.method=unrolled",)), ("em", "foreground", ("propagation.method=scores",)),
])
def test_memory_and_diagnostics_follow_the_variant(method, region, overrides):
    model = _model(ToyHead, method, region, n=4, overrides=overrides).eval()
    head = model.head
    x, mask, labels = labelled_batch([7, 2, 5], seed=6)
    model.initialize_memory([(x, mask, labels)])
    feats = head.embed(x, mask)
    sel = model.representatives.select(feats, mask, head(feats, mask), bank=True)
    expected = model.summarizer(feats, mask) if method == "features" else sel.reps
    # every stored entry is one of the variant's offers (a missing representative never is)
    offered = expected[sel.reps_mask] if sel.reps_mask is not None and method != "features" else expected.flatten(0, 1)
    stored = model.memory.bank[model.memory.filled]
    assert len(stored) and all(torch.isclose(offered, s).all(dim=-1).any() for s in stored)
    # branch_outputs gives forward's numbers for every branch
    branches = model.branch_outputs(x, mask, labels).output
    out = model(x, mask, labels)
    for branch in ("main", "intra", "inter"):
        torch.testing.assert_close(getattr(branches, branch).tcam, getattr(out, branch).tcam)
    torch.testing.assert_close(branches.representatives, out.representatives)


def test_short_videos_never_put_missing_representatives_in_the_bank():
    model = _model(ToyHead, "kmeans", n=6)
    x, mask, labels = labelled_batch([3, 2], seed=7)
    labels[:] = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    model.initialize_memory([(x, mask, labels)])
    assert int(model.memory.filled[0].sum()) == 5  # s = 5 slots of the 3 + 2 real representatives
    model.train()
    model(x, mask, labels).loss.backward()  # the training offer too
    assert int(model.memory.filled[0].sum()) == 5 and int(model.memory.filled[1:].sum()) == 0


@pytest.mark.parametrize("method, region", [("kmeans", "foreground"), ("discriminative", "all")])
def test_variants_run_under_cpu_autocast(method, region):
    model = RSKPWrapper(ToyHead(), attrs.evolve(RSKPConfig(), summarizer=SummarizerConfig(method=method,
                                                                                          region=region)))
    x, mask, labels = labelled_batch([9, 4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x.float(), mask, labels.float())
    assert torch.isfinite(out.loss)
    out.loss.backward()


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
    from rskp_plugin.method.summarizer import EMSummarizer

    f = torch.zeros(1, 5, 4, dtype=torch.float64, requires_grad=True)
    EMSummarizer(4, 3).double()(f).sum().backward()
    assert torch.isfinite(f.grad).all()
