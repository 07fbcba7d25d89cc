"""RSKPWrapper: branch wiring, losses, warm-up, padded batches, gradients, and a toy problem it learns."""

import math

import attrs
import pytest
import torch
from _toy import ToyHead

from rskp_plugin import RSKPConfig, RSKPWrapper
from rskp_plugin.config import LossConfig, MemoryConfig, PropagationConfig
from rskp_plugin.errors import ShapeError
from rskp_plugin.method.model import HeadOnlyModel


def _batch(lengths, feature_dim=8, classes=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    tmax = max(lengths)
    x = torch.randn(len(lengths), tmax, feature_dim, generator=g, dtype=dtype)
    mask = torch.arange(tmax)[None] < torch.tensor(lengths)[:, None]
    labels = torch.zeros(len(lengths), classes, dtype=dtype)
    labels[torch.arange(len(lengths)), torch.randint(0, classes, (len(lengths),), generator=g)] = 1
    return x, mask, labels


def _model(**memory):
    torch.manual_seed(0)
    cfg = RSKPConfig(memory=MemoryConfig(**memory)) if memory else RSKPConfig()
    return RSKPWrapper(ToyHead(), cfg).double()


def test_outputs_and_loss_terms():
    model = _model()
    x, mask, labels = _batch([12, 5])
    out = model(x, mask, labels)
    assert out.video_scores.shape == (2, 3) and out.cas.shape == (2, 12, 3)
    assert out.representatives.shape == (2, 8, 8)
    assert out.inter is None  # warm-up: memory not filled yet
    assert set(out.losses) == {"cls/main", "cls/intra", "distill", "att_norm"}
    torch.testing.assert_close(out.loss, sum(out.losses.values()))
    assert model(x, mask).loss is None


def test_inference_is_the_main_branch_by_default():
    model = _model().eval()
    x, mask, _ = _batch([10, 10])
    out = model(x, mask)
    assert torch.equal(out.video_scores, out.main.video_scores) and torch.equal(out.cas, out.main.cas)


@pytest.mark.parametrize("official", [False, True])
@pytest.mark.parametrize("name", ["facnet", "stpn", "bm", "wum"])
def test_evaluation_inference_gives_the_forward_prediction_with_one_head_pass(name, official):
    """``inference`` (what evaluation calls) returns the numbers ``forward`` returns at test time, on a padded
    batch with the memory bank in use; without test-time fusion the head runs once (the main branch), not once per
    branch."""
    from rskp_plugin import create_head

    x, mask, labels = _batch([12, 5, 9], feature_dim=8, classes=3, seed=5)
    torch.manual_seed(0)
    head = create_head(name, num_classes=3, feature_dim=8, embed_dim=8, dropout=0.0)
    model = RSKPWrapper(head, RSKPConfig.official() if official else RSKPConfig()).double()
    model.initialize_memory([(x, mask, labels)])
    model.eval()
    calls = []
    hooks = [head.register_forward_hook(lambda *a: calls.append("forward"))]
    if hasattr(head, "forward_branches"):
        own = head.forward_branches
        head.forward_branches = lambda *args: calls.append("branches") or own(*args)
    with torch.no_grad():
        full = model(x, mask)
        calls.clear()
        fast = model.inference(x, mask)
    for hook in hooks:
        hook.remove()
    for a, b in ((fast.video_scores, full.video_scores), (fast.cas, full.cas), (fast.attention, full.attention),
                 (fast.score_cas, full.score_cas)):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    if not official:  # official: the fused prediction needs the intra branch, so ``inference`` is ``forward``
        assert calls == ["forward"] and fast.intra is None


def test_official_inference_fuses_main_and_intra():
    torch.manual_seed(0)
    model = RSKPWrapper(ToyHead(), RSKPConfig.official()).double().eval()
    x, mask, _ = _batch([10, 10])
    out = model(x, mask)
    torch.testing.assert_close(out.video_scores, 0.6 * out.main.video_scores + 0.4 * out.intra.video_scores)
    torch.testing.assert_close(out.cas, 0.6 * out.main.cas + 0.4 * out.intra.cas)


def test_memory_warmup_switches_inter_branch_and_alpha():
    model = _model()
    x, mask, labels = _batch([9, 6, 4], seed=3)
    warm = model(x, mask, labels)
    model.initialize_memory([(x, mask, labels)])
    assert model.memory_ready and model.training
    before = model.memory.scores.clone()
    out = model(x, mask, labels)
    assert out.inter is not None and "cls/inter" in out.losses
    # alpha drops from 1.0 to 0.5 after warm-up; the unscaled distillation term is recovered by dividing
    assert torch.isfinite(out.losses["distill"]) and out.losses["distill"] > 0
    assert torch.all(model.memory.scores >= before)  # training forward offered new candidates
    assert warm.losses["distill"] > 0


def test_distillation_temperature_is_a_config_value():
    from rskp_plugin.method.losses import distillation

    assert RSKPConfig.official().losses.distillation_temperature == 0.2
    x, mask, labels = _batch([6, 4], dtype=torch.float32)
    config = attrs.evolve(RSKPConfig.official(), losses=LossConfig(distillation_temperature=1.0, rampup_epochs=0))
    out = RSKPWrapper(ToyHead(), config)(x, mask, labels)
    torch.testing.assert_close(out.losses["distill"], distillation(out.main.tcam, out.intra.tcam, mask, temperature=1.0))


def test_disabled_memory_never_runs_inter_branch():
    model = _model(enabled=False)
    x, mask, labels = _batch([5, 5])
    model.initialize_memory([(x, mask, labels)])
    assert not model.memory_ready and model(x, mask, labels).inter is None


@pytest.mark.parametrize("ready", [False, True])
def test_padded_batch_equals_each_video_alone(ready):
    model = _model().eval()
    lengths = [11, 4, 1, 7]
    x, mask, labels = _batch(lengths, seed=5)
    if ready:
        model.initialize_memory([(x, mask, labels)])
    batched = model(x, mask, labels)
    singles = [model(x[b : b + 1, :n], None, labels[b : b + 1]) for b, n in enumerate(lengths)]
    for b, (n, one) in enumerate(zip(lengths, singles)):
        torch.testing.assert_close(batched.video_scores[b], one.video_scores[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(batched.cas[b, :n], one.cas[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(batched.representatives[b], one.representatives[0], rtol=1e-9, atol=1e-12)
        if ready:
            torch.testing.assert_close(batched.inter.tcam[b, :n], one.inter.tcam[0], rtol=1e-9, atol=1e-12)
    for key in batched.losses:
        mean = torch.stack([one.losses[key] for one in singles]).mean()
        torch.testing.assert_close(batched.losses[key], mean, rtol=1e-9, atol=1e-12)


def test_gradcheck_through_wrapper():
    model = _model()
    x, mask, labels = _batch([4, 3], feature_dim=8)
    x.requires_grad_(True)
    model.initialize_memory([(x.detach(), mask, labels)])
    model.eval()  # a training forward after warm-up updates the memory bank, which would move the function

    def differentiable(inp):
        out = model(inp, mask, labels)
        # the distillation teacher is detached on purpose, so finite differences see a path autograd does not
        terms = [v for k, v in out.losses.items() if k != "distill"]
        return out.video_scores, out.cas, out.representatives, torch.stack(terms).sum()

    assert torch.autograd.gradcheck(differentiable, (x,), atol=1e-6)


def test_all_parameters_get_finite_gradients():
    model = _model()
    x, mask, labels = _batch([6, 4])
    model(x, mask, labels).loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize(
    "x, mask, labels, match",
    [
        (torch.randn(2, 5, 7), None, None, None),
        (torch.randn(2, 5, 8), torch.ones(2, 4, dtype=torch.bool), None, "mask"),
        (torch.full((1, 5, 8), float("nan")), None, None, "NaN"),
        (torch.randn(2, 5, 8), None, torch.ones(2, 4), "labels"),
        (torch.randn(1, 0, 8), None, None, "no snippets"),
        (torch.randn(2, 3, 8), torch.tensor([[True] * 3, [False] * 3]), None, "no real snippet"),
    ],
)
def test_bad_input_is_a_clear_error(x, mask, labels, match):
    model = RSKPWrapper(ToyHead())
    with pytest.raises((ShapeError, RuntimeError), match=match):
        model(x, mask, labels)


def test_rejects_objects_that_are_not_heads():
    with pytest.raises(TypeError, match="embed_dim"):
        RSKPWrapper(torch.nn.Linear(2, 2))


def _separable(seed, videos=48, length=24, classes=3, dim=8):
    """Each video holds one action class: a few snippets carry that class's direction, the rest are noise."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim)[:classes] * 3.0
    x = torch.randn(videos, length, dim, generator=g) * 0.5
    labels = torch.zeros(videos, classes)
    for v in range(videos):
        c = v % classes
        start = int(torch.randint(0, length - 6, (1,), generator=g))
        x[v, start : start + 6] += centres[c]
        labels[v, c] = 1
    return x, torch.ones(videos, length, dtype=torch.bool), labels


@pytest.mark.parametrize("wrap", [RSKPWrapper, HeadOnlyModel])
def test_toy_head_learns_a_separable_problem(wrap):
    torch.manual_seed(0)
    model = wrap(ToyHead(feature_dim=8, embed_dim=16))
    x, mask, labels = _separable(0)
    xt, mt, lt = _separable(1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def accuracy():
        scores = model.predict(xt, mt).video_scores
        return float((scores.argmax(1) == lt.argmax(1)).float().mean())

    before = accuracy()
    first = None
    for step in range(60):
        loss = model(x, mask, labels).loss
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
    assert accuracy() >= 0.9 > before


@pytest.mark.parametrize("weights", ["shared", "default", "copies"])
@pytest.mark.parametrize("name", ["facnet", "stpn", "bm"])
def test_factored_branches_give_the_dense_walk_numbers(name, weights):
    """Heads with ``forward_branches``: the same losses, outputs, gradients and memory as running each branch on
    the materialised walk (``factored_branches: false``), with the inter branch on; with every weight shared
    (official), with the head's defaults (FAC-Net's branch copy of its attention centre, STPN's detached weights)
    and with branch copies of the classifier that have moved away from the head's."""
    import attrs

    from rskp_plugin import create_head

    x, mask, labels = _batch([12, 5, 9], feature_dim=8, classes=3, seed=4)
    runs = []
    for factored in (True, False):
        torch.manual_seed(0)
        head = create_head(name, num_classes=3, feature_dim=8, embed_dim=8, dropout=0.0)
        calls = []
        own = head.forward_branches
        head.forward_branches = lambda *args: calls.append(1) or own(*args)
        propagation = {"shared": PropagationConfig(head_gradient=True, branch_parameters=()),
                       "default": PropagationConfig(),
                       "copies": PropagationConfig(branch_parameters=["centres" if name == "facnet" else "classifier"])}
        config = attrs.evolve(RSKPConfig(), factored_branches=factored, propagation=propagation[weights])
        model = RSKPWrapper(head, config).double()
        with torch.no_grad():
            for copy in model.branch_weights:
                copy.add_(0.1 * torch.randn_like(copy))
        model.initialize_memory([(x, mask, labels)])
        model.train()
        out = model(x, mask, labels)
        out.loss.backward()
        assert len(calls) == (1 if factored else 0)
        runs.append((out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
                     model.memory.bank.clone()))
    (fast, fast_grads, fast_bank), (slow, slow_grads, slow_bank) = runs
    assert fast.inter is not None and set(fast.losses) == set(slow.losses)
    for key in fast.losses:
        torch.testing.assert_close(fast.losses[key], slow.losses[key], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.cas, slow.cas, rtol=1e-10, atol=1e-12)
    assert fast_grads.keys() == slow_grads.keys()
    for key in fast_grads:
        torch.testing.assert_close(fast_grads[key], slow_grads[key], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(fast_bank, slow_bank)


def _teacher_model(**teacher):
    import attrs

    from rskp_plugin.config import TeacherConfig

    torch.manual_seed(0)
    return RSKPWrapper(ToyHead(), attrs.evolve(RSKPConfig(), teacher=TeacherConfig(**teacher))).double()


def test_official_teacher_is_the_propagated_branches():
    model = _teacher_model(source="propagated", weighting="uniform")
    x, mask, labels = _batch([9, 6], seed=4)
    out = model(x, mask, labels)
    torch.testing.assert_close(model.teacher.pseudo_labels(out.main, out.intra, None), out.intra.tcam.detach())
    model.initialize_memory([(x, mask, labels)])
    out = model(x, mask, labels)
    expected = 0.8 * out.intra.tcam + 0.2 * out.inter.tcam
    torch.testing.assert_close(model.teacher.pseudo_labels(out.main, out.intra, out.inter), expected.detach())


def test_ensemble_teacher_fuses_the_main_branch_in_as_at_test_time():
    model = _teacher_model(source="ensemble", weighting="uniform")
    x, mask, labels = _batch([9, 6], seed=4)
    out = model(x, mask, labels)
    teacher = model.teacher.pseudo_labels(out.main, out.intra, None)
    torch.testing.assert_close(teacher, (0.6 * out.main.tcam + 0.4 * out.intra.tcam).detach())
    assert not teacher.requires_grad


def test_confidence_weighting_scales_each_snippet_by_the_teachers_certainty():
    from rskp_plugin.method.losses import distillation, teacher_confidence

    model = _teacher_model(source="propagated", weighting="confidence")
    x, mask, labels = _batch([9, 6], seed=4)
    out = model(x, mask, labels)
    teacher = model.teacher.pseudo_labels(out.main, out.intra, None)
    tau = model.config.losses.distillation_temperature
    weights = teacher_confidence(teacher, temperature=tau)
    assert ((weights >= 0) & (weights <= 1)).all()
    expected = distillation(out.main.tcam, teacher, mask, temperature=tau, weights=weights)
    torch.testing.assert_close(out.losses["distill"], expected)
    assert out.losses["distill"] < distillation(out.main.tcam, teacher, mask, temperature=tau)


def test_unknown_teacher_option_is_a_config_error():
    from rskp_plugin.config_io import apply_overrides
    from rskp_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="teacher.source"):
        apply_overrides(RSKPConfig(), ["teacher.source=oracle"])


def test_rampup_scales_rskp_terms_only_in_training():
    torch.manual_seed(0)
    cfg = RSKPConfig(losses=LossConfig(rampup_epochs=10))
    model = RSKPWrapper(ToyHead(), cfg).double()
    x, mask, labels = _batch([12, 5])
    full = RSKPWrapper(ToyHead(), RSKPConfig()).double()
    full.load_state_dict(model.state_dict())
    model.train(), full.train()
    model.start_epoch(2)
    torch.manual_seed(1)
    ramped = model(x, mask, labels).losses
    torch.manual_seed(1)
    plain = full(x, mask, labels).losses
    w = math.exp(-5.0 * 0.8 ** 2)
    for key in ("cls/intra", "distill"):
        torch.testing.assert_close(ramped[key], w * plain[key])
    for key in ("cls/main", "att_norm"):  # the head's own terms keep their weight
        torch.testing.assert_close(ramped[key], plain[key])
    model.start_epoch(10)
    torch.manual_seed(1)
    torch.testing.assert_close(model(x, mask, labels).losses["distill"], plain["distill"])
    model.start_epoch(0)
    model.eval()  # evaluation reports the terms at full weight
    full.eval()
    torch.testing.assert_close(model(x, mask, labels).losses["distill"], full(x, mask, labels).losses["distill"])


@pytest.mark.parametrize("head_gradient", [True, False])
def test_propagated_branches_can_leave_the_heads_weights_alone(head_gradient):
    from rskp_plugin.config import PropagationConfig

    torch.manual_seed(0)
    model = RSKPWrapper(ToyHead(), RSKPConfig(propagation=PropagationConfig(head_gradient=head_gradient))).double()
    reference = RSKPWrapper(ToyHead(), RSKPConfig()).double()
    reference.load_state_dict(model.state_dict())
    x, mask, labels = _batch([12, 5])
    out, ref = model(x, mask, labels), reference(x, mask, labels)
    for key in ref.losses:  # the same numbers either way: only where the gradient goes differs
        torch.testing.assert_close(out.losses[key], ref.losses[key])
    classifier = model.head.classifier.weight
    (g_cls,) = torch.autograd.grad(out.losses["cls/intra"], [classifier], allow_unused=True)
    assert (g_cls is None or float(g_cls.abs().max()) == 0.0) is (not head_gradient)
    embed = model.head.embedding[0].weight
    (g_embed,) = torch.autograd.grad(model(x, mask, labels).losses["cls/intra"], [embed])
    assert float(g_embed.abs().max()) > 0  # F and the summariser still learn from the propagated branches
    (g_mu,) = torch.autograd.grad(model(x, mask, labels).losses["cls/intra"], [model.summarizer.initial_means])
    assert float(g_mu.abs().max()) > 0


def test_branch_parameters_give_the_propagated_branches_their_own_copy():
    from rskp_plugin.config import PropagationConfig

    torch.manual_seed(0)
    config = RSKPConfig(propagation=PropagationConfig(branch_parameters=["classifier"]))
    model = RSKPWrapper(ToyHead(), config).double()
    assert model.branch_names == ["classifier.weight", "classifier.bias"]
    shared = RSKPWrapper(ToyHead(), RSKPConfig(propagation=PropagationConfig(branch_parameters=[]))).double()
    assert shared.branch_names == []
    shared.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("branch_weights")})
    x, mask, labels = _batch([12, 5])
    out, ref = model(x, mask, labels), shared(x, mask, labels)
    for key in ref.losses:  # the copies start equal to the head's: the same numbers until they learn apart
        torch.testing.assert_close(out.losses[key], ref.losses[key])
    # the propagated branches' losses train the copies, not the head's own classifier (the embedding still learns)
    own, copy = model.head.classifier.weight, model.branch_weights[0]
    g_own, g_copy, g_embed = torch.autograd.grad(out.losses["cls/intra"], [own, copy, model.head.embedding[0].weight],
                                                 allow_unused=True)
    assert g_own is None or float(g_own.abs().max()) == 0.0
    assert float(g_copy.abs().max()) > 0 and float(g_embed.abs().max()) > 0
    # and the main branch runs on the head's own classifier only
    with torch.no_grad():
        copy.add_(1.0)
    moved = model(x, mask, labels)
    torch.testing.assert_close(moved.main.tcam, out.main.tcam)
    assert not torch.allclose(moved.intra.tcam, out.intra.tcam)


def test_branch_parameters_name_errors_and_defaults():
    from rskp_plugin.config import PropagationConfig
    from rskp_plugin.errors import ConfigError
    from rskp_plugin.plugins import create_head

    bad = RSKPConfig(propagation=PropagationConfig(branch_parameters=["attn"]))
    with pytest.raises(ConfigError, match=r"'attn' names no parameter of ToyHead; its parameters are .*classifier"):
        RSKPWrapper(ToyHead(), bad)
    facnet = create_head("facnet", num_classes=3, feature_dim=8, embed_dim=8)
    assert RSKPWrapper(facnet).branch_names == []  # the default: every parameter shared (official)
    own = RSKPConfig(propagation=PropagationConfig(branch_parameters=["foreground"]))
    assert RSKPWrapper(facnet, own).branch_names == ["foreground"]
    stpn = create_head("stpn", num_classes=3, feature_dim=8, embed_dim=8)
    module = RSKPWrapper(stpn, RSKPConfig(propagation=PropagationConfig(branch_parameters=["attention"])))
    assert module.branch_names == ["attention.0.weight", "attention.0.bias", "attention.2.weight", "attention.2.bias"]


def test_a_recipe_can_decline_the_distillation():
    from rskp_plugin.config import TeacherConfig

    x, mask, labels = _batch([12, 5])
    torch.manual_seed(0)
    declines = RSKPWrapper(ToyHead(), RSKPConfig(teacher=TeacherConfig(distill=False))).double()
    torch.manual_seed(0)
    distils = RSKPWrapper(ToyHead(), RSKPConfig()).double()
    assert RSKPConfig().teacher.distill and RSKPConfig.official().teacher.distill
    out, ref = declines(x, mask, labels), distils(x, mask, labels)
    assert float(out.losses["distill"]) == 0.0 and float(ref.losses["distill"]) > 0
    for key in ("cls/main", "cls/intra"):  # only the distillation term differs
        torch.testing.assert_close(out.losses[key], ref.losses[key])
