"""The propagation ablations (``rskp.propagation``, ``rskp.losses.feature_loss``): each walk against its definition,
the unrolled walk's convergence to eq. 6, and every variant wrapped around every built-in head."""

from __future__ import annotations

import attrs
import pytest
import torch
from _toy import labelled_batch
from hypothesis import given
from hypothesis import strategies as st

from rskp_plugin import RSKPConfig, RSKPWrapper, create_head
from rskp_plugin.config_io import apply_overrides, from_mapping
from rskp_plugin.errors import ConfigError, ShapeError
from rskp_plugin.method.losses import distillation, feature_distance
from rskp_plugin.method.propagation import affinity, birw, birw_walks, column_normalize
from rskp_plugin.method.walks import random_walks, score_walks, unrolled_walks
from rskp_plugin.reference.propagation import birw_unrolled

HEADS = ("facnet", "stpn", "bm", "wum")
# every variant of Table 5, Fig. 5 and supplement Table 3 as ``--set`` overrides of the ``rskp`` section
VARIANTS = {
    "birw": [],
    "random_walk": ["propagation.method=random_walk"],
    "unrolled": ["propagation.method=unrolled", "propagation.steps=2"],
    "scores": ["propagation.method=scores"],
    "no_cls": ["losses.intra_classification=0", "losses.inter_classification=0"],
    "feature_l1": ["losses.feature_loss=l1", "losses.distillation=0", "losses.intra_classification=0"],
    "feature_l2": ["losses.feature_loss=l2", "losses.feature_weight=0.5"],
    "early": ["propagation.inter_fusion=early"],
    "early_scores": ["propagation.inter_fusion=early", "propagation.method=scores"],
}


def _config(name: str, *extra: str) -> RSKPConfig:
    return apply_overrides(RSKPConfig(), [*VARIANTS[name], *extra])




def _model(head: str, config: RSKPConfig) -> RSKPWrapper:
    torch.manual_seed(0)
    return RSKPWrapper(create_head(head, num_classes=3, feature_dim=8, embed_dim=8, dropout=0.0), config).double()


def _walk_case(seed, lengths=(11, 5, 8), n=4, d=6):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(len(lengths), max(lengths), d, generator=g, dtype=torch.float64)
    mu = torch.randn(len(lengths), n, d, generator=g, dtype=torch.float64)
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    return f, mu, mask


# ------------------------------------------------------------------------------------------------------- config
def test_defaults_are_todays_walk():
    c = RSKPConfig()
    assert (c.propagation.method, c.propagation.steps, c.propagation.inter_fusion) == ("birw", 3, "late")
    assert (c.losses.feature_loss, c.losses.feature_weight) == ("none", 1.0)


@pytest.mark.parametrize("data, match", [
    ({"propagation": {"method": "walk"}}, r"method.*'birw', 'random_walk', 'unrolled', 'scores'.*'walk'"),
    ({"propagation": {"inter_fusion": "middle"}}, r"inter_fusion.*'late', 'early'.*'middle'"),
    ({"propagation": {"steps": 0}}, "steps"),
    ({"propagation": {"steps": 1.5}}, r'"propagation.steps" must be int'),
    ({"propagation": {"stpes": 2}}, r'Unknown config key "propagation.stpes". Did you mean "steps"'),
    ({"losses": {"feature_loss": "l3"}}, r"feature_loss.*'none', 'l1', 'l2'.*'l3'"),
    ({"losses": {"feature_weight": -1}}, "feature_weight"),
    ({"propagation": {"method": "scores"}, "losses": {"feature_loss": "l1"}}, "propagates class logits"),
])
def test_unknown_or_invalid_values_are_named(data, match):
    with pytest.raises(ConfigError, match=match):
        from_mapping(RSKPConfig, data)


def test_overrides_reach_the_new_keys():
    c = apply_overrides(RSKPConfig(), ["propagation.method=unrolled", "propagation.steps=7", "losses.feature_loss=l2"])
    assert (c.propagation.method, c.propagation.steps, c.losses.feature_loss) == ("unrolled", 7, "l2")
    with pytest.raises(ConfigError, match="rskp.propagation.method=scores"):
        apply_overrides(c, ["propagation.method=scores"])


# -------------------------------------------------------------------------------------------------------- walks
@given(st.integers(1, 12), st.floats(0.05, 0.95), st.integers(1, 6), st.integers(0, 2**16))
def test_unrolled_equals_the_reference_iteration_with_padding_and_two_walks(steps, w, n, seed):
    f, mu, mask = _walk_case(seed, n=n)
    g = torch.Generator().manual_seed(seed + 1)
    mem = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    mem_mask = torch.arange(5)[None] < torch.tensor([5, 2, 1])[:, None]  # padded memory slots
    walk_a, walk_e = unrolled_walks(f, [(mu, None), (mem, mem_mask)], w, steps, 3.0, mask)
    torch.testing.assert_close(walk_a.dense(), birw_unrolled(f, mu, w, steps, 3.0, mask), rtol=1e-10, atol=1e-12)
    ref_e = birw_unrolled(f, mem, w, steps, 3.0, mask, reps_mask=mem_mask)
    torch.testing.assert_close(walk_e.dense(), ref_e, rtol=1e-10, atol=1e-12)
    assert torch.all(walk_a.dense()[~mask] == 0)


def test_random_walk_is_z_mu_without_residual():
    f, mu, mask = _walk_case(3)
    (walk,) = random_walks(f, [(mu, None)], 5.0, mask)
    torch.testing.assert_close(walk.dense(), affinity(f, mu, temperature=5.0, mask=mask) @ mu)
    assert torch.all(walk.scale == 0)


@pytest.mark.parametrize("fn", [
    lambda f, mu, mask: random_walks(f, [(mu, None)], 5.0, mask)[0].dense(),
    lambda f, mu, mask: unrolled_walks(f, [(mu, None)], 0.5, 3, 5.0, mask)[0].dense(),
    lambda f, mu, mask: score_walks(f, f[..., :3] * 2.0, [(mu, mu[..., :3], None)], 0.5, 5.0, mask)[0],
], ids=["random_walk", "unrolled", "scores"])
def test_walks_are_differentiable(fn):
    f, mu, mask = _walk_case(1, lengths=(6, 4), n=3, d=4)
    f.requires_grad_(True)
    mu.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, mask), (f, mu))


def test_unrolled_rejects_zero_steps():
    f, mu, mask = _walk_case(0)
    with pytest.raises(ShapeError, match="steps >= 1"):
        unrolled_walks(f, [(mu, None)], 0.5, 0, 5.0, mask)


def _row_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm(dim=-1).amax())


@given(st.floats(0.1, 0.9), st.floats(0.5, 20.0), st.integers(1, 8), st.integers(0, 2**16))
def test_unrolled_error_to_the_closed_form_shrinks_by_w_squared_per_step(w, temperature, n, seed):
    """F^(k) - F* = (w^2 Z N^T)^k (F - F*) and Z N^T is row-stochastic, so the largest snippet error shrinks by at
    least w^2 per step (a wrong recursion stalls at another fixed point and fails); it is also never zero."""
    f, mu, mask = _walk_case(seed, n=n)
    star = birw(f, mu, w, temperature, mask)
    errors = [_row_error(f * mask[..., None], star)]  # F^(0) = F
    for steps in range(1, 9):
        errors.append(_row_error(unrolled_walks(f, [(mu, None)], w, steps, temperature, mask)[0].dense(), star))
    slack = 1e-12 * float(star.norm(dim=-1).amax())
    for k in range(1, len(errors)):
        assert errors[k] <= w * w * errors[k - 1] + slack, (k, errors)
        assert errors[k] < errors[k - 1] or errors[k - 1] <= slack, (k, errors)


def test_many_steps_reach_the_closed_form_in_float32():
    f, mu, mask = _walk_case(2, lengths=(300, 120), n=8, d=32)
    f, mu = f.float(), mu.float()
    walked = unrolled_walks(f, [(mu, None)], 0.5, 40, 5.0, mask)[0].dense()
    star = birw(f, mu, 0.5, 5.0, mask)
    assert float((walked - star).norm() / star.norm()) < 1e-6


def test_score_walk_is_eq6_on_logits():
    """T^a = (1 - w)(I - w^2 Z N^T)^-1 (w Z S_mu + T) by a dense solve, Z from the features; logits equal to the
    features give birw itself."""
    f, mu, mask = _walk_case(4)
    g = torch.Generator().manual_seed(9)
    scores, reps_scores = torch.randn(3, 11, 4, generator=g).double(), torch.randn(3, 4, 4, generator=g).double()
    (ta,) = score_walks(f, scores, [(mu, reps_scores, None)], 0.4, 5.0, mask)
    z = affinity(f, mu, temperature=5.0, mask=mask)
    system = torch.eye(11, dtype=f.dtype) - 0.16 * z @ column_normalize(z).transpose(1, 2)
    dense = 0.6 * torch.linalg.solve(system, 0.4 * z @ reps_scores + scores) * mask[..., None]
    torch.testing.assert_close(ta, dense, rtol=1e-10, atol=1e-12)
    (same,) = score_walks(f, f, [(mu, mu, None)], 0.4, 5.0, mask)
    torch.testing.assert_close(same, birw(f, mu, 0.4, 5.0, mask), rtol=1e-10, atol=1e-12)


def test_feature_distance_is_the_masked_mean_per_video():
    f, g, mask = _walk_case(5)
    g = g.new_zeros(3, 11, 6) + 0.5
    l1 = feature_distance(f, g, mask, kind="l1")
    l2 = feature_distance(f, g, mask, kind="l2")
    per_video = [((f[b, :n] - 0.5).abs().mean(), ((f[b, :n] - 0.5) ** 2).mean()) for b, n in enumerate((11, 5, 8))]
    torch.testing.assert_close(l1, torch.stack([a for a, _ in per_video]).mean())
    torch.testing.assert_close(l2, torch.stack([b for _, b in per_video]).mean())
    with pytest.raises(ValueError, match="l1"):
        feature_distance(f, g, mask, kind="l3")


# ------------------------------------------------------------------------------------------------------ wrapper
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("head", HEADS)
def test_every_variant_trains_on_every_head_and_batches_like_one_video(head, variant):
    model = _model(head, _config(variant)).train()
    x, mask, labels = labelled_batch([9, 5, 7], seed=1)
    for ready in (False, True):
        model.zero_grad()
        out = model(x, mask, labels)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        out.loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), name
        assert all(p.grad is not None for p in model.head.parameters() if p.requires_grad)
        if not ready:
            model.initialize_memory([(x, mask, labels)])
    scores = "scores" in variant
    early = variant.startswith("early")
    assert (out.inter is None) == early
    assert ("cls/intra" in out.losses) != scores and ("cls/inter" in out.losses) == (not scores and not early)
    assert ("feature" in out.losses) == variant.startswith("feature")
    model.eval()
    batched = model(x, mask, labels)
    for b, n in enumerate([9, 5, 7]):
        one = model(x[b:b + 1, :n], None, labels[b:b + 1])
        for key in ("tcam", "cas"):
            torch.testing.assert_close(getattr(batched.intra, key)[b, :n], getattr(one.intra, key)[0])
        torch.testing.assert_close(batched.video_scores[b], one.video_scores[0])
    for key, value in batched.losses.items():
        alone = [model(x[b:b + 1, :n], None, labels[b:b + 1]).losses[key] for b, n in enumerate([9, 5, 7])]
        torch.testing.assert_close(value, torch.stack(alone).mean(), msg=key)


@pytest.mark.parametrize("variant", ["random_walk", "unrolled", "early", "feature_l2"])
@pytest.mark.parametrize("head", ["facnet", "stpn", "bm"])
def test_factored_branches_match_the_dense_walk_for_the_variants(head, variant):
    x, mask, labels = labelled_batch([12, 5, 9], seed=4)
    runs = []
    for factored in (True, False):
        model = _model(head, attrs.evolve(_config(variant), factored_branches=factored))
        model.initialize_memory([(x, mask, labels)])
        out = model.train()(x, mask, labels)
        out.loss.backward()
        runs.append((out.losses, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (fast, fast_grads), (slow, slow_grads) = runs
    assert fast.keys() == slow.keys() and fast_grads.keys() == slow_grads.keys()
    for key in fast:
        torch.testing.assert_close(fast[key], slow[key], rtol=1e-10, atol=1e-12)
    for key in fast_grads:
        torch.testing.assert_close(fast_grads[key], slow_grads[key], rtol=1e-8, atol=1e-10)


def test_feature_loss_compares_f_with_the_intra_walk():
    model = _model("facnet", _config("feature_l2")).eval()
    x, mask, labels = labelled_batch([9, 5], seed=2)
    out = model(x, mask, labels)
    feats = model.head.embed(x, mask)
    walked = birw(feats, out.representatives, 0.5, 5.0, mask)
    torch.testing.assert_close(out.losses["feature"], 0.5 * feature_distance(feats, walked, mask, kind="l2"))


def test_early_fusion_walks_over_the_concatenated_representatives():
    official_teacher = ("teacher.source=propagated", "teacher.weighting=uniform", "teacher.distill=true")
    model = _model("stpn", _config("early", *official_teacher))
    x, mask, labels = labelled_batch([9, 5, 7], seed=3)
    model.initialize_memory([(x, mask, labels)])
    model.eval()
    out = model(x, mask, labels)
    feats = model.head.embed(x, mask)
    mem, mem_mask = model.memory.retrieve(labels)
    reps = torch.cat([out.representatives, mem], dim=1)
    reps_mask = torch.cat([torch.ones(3, reps.shape[1] - mem.shape[1], dtype=torch.bool), mem_mask], dim=1)
    (walk,) = birw_walks(feats, [(reps, reps_mask)], 0.5, 5.0, mask)
    torch.testing.assert_close(out.intra.tcam, model.head(walk.dense(), mask).tcam)
    tau = model.config.losses.distillation_temperature
    # the official teacher is that one branch alone (alpha after warm-up 0.5)
    torch.testing.assert_close(out.losses["distill"], 0.5 * distillation(out.main.tcam, out.intra.tcam, mask,
                                                                         temperature=tau))


def test_scores_branches_are_the_walked_main_tcam():
    model = _model("bm", _config("scores"))
    x, mask, labels = labelled_batch([9, 5, 7], seed=5)
    model.initialize_memory([(x, mask, labels)])
    out = model.eval()(x, mask, labels)
    feats = model.head.embed(x, mask)
    head = model.head
    mem, mem_mask = model.memory.retrieve(labels)
    walks = [(out.representatives, head.classify(out.representatives), None), (mem, head.classify(mem), mem_mask)]
    intra, inter = score_walks(feats, out.main.tcam, walks, 0.5, 5.0, mask)
    torch.testing.assert_close(out.intra.tcam, intra)
    torch.testing.assert_close(out.inter.tcam, inter)
    probs = torch.softmax(intra, dim=-1)[..., :3] * out.main.attention[..., None]
    torch.testing.assert_close(out.intra.cas, probs)
    assert torch.equal(out.intra.video_scores, out.main.video_scores)


@pytest.mark.parametrize("variant", ["random_walk", "unrolled", "scores", "early", "early_scores"])
@pytest.mark.parametrize("head", ["facnet", "wum"])
def test_diagnostics_give_the_prediction_and_the_training_teacher(head, variant):
    model = _model(head, _config(variant))
    x, mask, labels = labelled_batch([9, 5, 7], seed=6)
    for ready in (False, True):
        if ready:
            model.initialize_memory([(x, mask, labels)])
        model.eval()
        plain, with_labels = model(x, mask), model(x, mask, labels)
        b = model.branch_outputs(x, mask, labels)
        assert torch.equal(b.output.video_scores, plain.video_scores) and torch.equal(b.output.cas, plain.cas)
        assert torch.equal(b.output.intra.tcam, plain.intra.tcam)
        if with_labels.inter is not None:
            torch.testing.assert_close(b.output.inter.tcam, with_labels.inter.tcam)
        else:
            assert b.output.inter is None
        target = model.teacher.pseudo_labels(with_labels.main, with_labels.intra, with_labels.inter)
        torch.testing.assert_close(b.teacher.tcam, target)
        assert b.teacher_rule in ("head", "softmax")
        assert b.teacher.cas.shape == plain.cas.shape and torch.isfinite(b.teacher.cas).all()


@pytest.mark.parametrize("variant", ["random_walk", "unrolled", "scores", "early", "feature_l1"])
def test_variants_run_under_bfloat16_autocast(variant):
    """``train.amp``: the walks compute in float32 inside autocast (as eq. 6 does) and the step stays finite."""
    torch.manual_seed(0)
    model = RSKPWrapper(create_head("facnet", num_classes=3, feature_dim=8, embed_dim=8, dropout=0.0),
                        _config(variant)).train()
    x, mask, labels = (t.float() if t.is_floating_point() else t for t in labelled_batch([9, 5, 7], seed=7))
    model.initialize_memory([(x, mask, labels)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, mask, labels)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
