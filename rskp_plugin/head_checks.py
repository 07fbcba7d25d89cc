"""The individual properties that :func:`rskp_plugin.testing.check_head` checks, one function each, and the tiny padded
batch they run on. Each ``_check_<name>(factory, case, C, D, atol=..., rtol=...)`` raises ``CheckFailure`` naming what
broke; ``CHECK_FUNCTIONS`` maps the names of ``rskp_plugin.testing.CHECKS`` to them.

Symbols: B batch, T snippets, D input feature size, d embedding size, C action classes.
"""

from __future__ import annotations

import copy
import io
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .config import MemoryConfig, RSKPConfig
from .localization_settings import LocalizationSettings
from .method.propagation import birw_factors
from .method.wrapper import RSKPWrapper
from .protocols import HeadOutput, declared_recipe_attributes, head_traits, missing_head_parts, recipe_attribute_message


class CheckFailure(Exception):
    """A property of the Head protocol that a head broke (the message says how)."""


def _fail(msg: str) -> None:
    raise CheckFailure(msg)


def _close(a: Tensor, b: Tensor, what: str, atol: float, rtol: float) -> None:
    if a.shape != b.shape:
        _fail(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    if not torch.allclose(a, b, atol=atol, rtol=rtol):
        diff = (a - b).abs().max().item()
        _fail(f"{what}: values differ (max abs difference {diff:.3g}, atol {atol:g}, rtol {rtol:g})")


class CheckCase:
    """One tiny padded batch: features (B, T, D) with garbage on padding, mask (B, T), multi-hot labels (B, C)."""

    def __init__(self, num_classes: int, feature_dim: int, lengths: Sequence[int], seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.lengths = list(lengths)
        batch, length = len(self.lengths), max(self.lengths)
        self.features = torch.randn(batch, length, feature_dim, generator=gen)
        self.mask = torch.arange(length)[None, :] < torch.tensor(self.lengths)[:, None]  # (B, T)
        self.features[~self.mask] = 0.0
        self.garbage = self.features.clone()
        self.garbage[~self.mask] = 1e3 * torch.randn(int((~self.mask).sum()), feature_dim, generator=gen)
        labels = torch.zeros(batch, num_classes)
        for b in range(batch):  # every video gets 1 or 2 classes, spread over the classes
            labels[b, b % num_classes] = 1.0
            if b % 2:
                labels[b, (b + 1) % num_classes] = 1.0
        self.labels = labels
        self.shapes = f"B={batch}, T={length} (lengths {self.lengths}), D={feature_dim}, C={num_classes}"


def _run(head: Any, features: Tensor, mask: Tensor) -> tuple[Tensor, HeadOutput]:
    feats = head.embed(features, mask)
    return feats, head(feats, mask)


def _losses(head: Any, out: HeadOutput, labels: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    return head.classification_loss(out, labels, mask), dict(head.auxiliary_loss(out, labels, mask))


def _total(head: Any, out: HeadOutput, labels: Tensor, mask: Tensor) -> Tensor:
    cls, aux = _losses(head, out, labels, mask)
    return cls + sum(aux.values(), torch.zeros((), dtype=cls.dtype))


def _fields(out: HeadOutput) -> dict[str, Tensor]:
    fields = {"video_scores": out.video_scores, "tcam": out.tcam, "cas": out.cas}
    if out.attention is not None:
        fields["attention"] = out.attention
    return fields


# --------------------------------------------------------------------------------------------------------- checks
def _check_structure(factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, **_: Any) -> None:
    head = factory(num_classes=c, feature_dim=d_in)
    if not isinstance(head, torch.nn.Module):
        _fail(f"the factory must return a torch.nn.Module, got {type(head).__name__}")
    attributes, missing = missing_head_parts(head)
    if attributes:
        _fail(f"the head needs an int attribute {attributes[0]!r}")
    if head.num_classes != c:
        _fail(f"num_classes is {head.num_classes}, but the factory was asked for {c}")
    if missing:
        _fail(f"missing methods: {', '.join(missing)}")
    settings = head_traits(head).localization
    if settings is not None:
        if not isinstance(settings, LocalizationSettings):
            _fail(f"head.localization must be a LocalizationSettings or None, got {type(settings).__name__}")


def _check_outputs(head: Any, case: CheckCase, features: Tensor, dtype: torch.dtype) -> None:
    c = head.num_classes
    batch, length = case.mask.shape
    feats, out = _run(head, features, case.mask)
    if not isinstance(out, HeadOutput):
        _fail(f"forward must return a rskp_plugin.HeadOutput, got {type(out).__name__}")
    if feats.shape != (batch, length, head.embed_dim):
        _fail(f"embed returned {tuple(feats.shape)}, expected (B, T, d) = {(batch, length, head.embed_dim)}")
    if bool((feats[~case.mask] != 0).any()):
        _fail("embed must return zeros on padded snippets")
    want = {"video_scores": [(batch, c)], "tcam": [(batch, length, c), (batch, length, c + 1)],
            "attention": [(batch, length)], "cas": [(batch, length, c)]}
    for name, value in _fields(out).items():
        if tuple(value.shape) not in want[name]:
            _fail(f"{name} has shape {tuple(value.shape)}, expected one of {want[name]}")
        if value.dtype != dtype:
            _fail(f"{name} has dtype {value.dtype}, expected the input dtype {dtype}")
        valid = value if name == "video_scores" else value[case.mask]
        if not bool(torch.isfinite(valid).all()):
            _fail(f"{name} holds NaN/Inf on real snippets")
        if name in ("video_scores", "attention") and not bool(((valid >= 0) & (valid <= 1)).all()):
            _fail(f"{name} must lie in [0, 1], got range [{valid.min().item():.3g}, {valid.max().item():.3g}]")
    if not isinstance(out.extras, dict) or not all(isinstance(v, Tensor) for v in out.extras.values()):
        _fail("extras must be a dict of tensors")
    logits = head.classify(feats)
    if logits.shape[-1] != out.tcam.shape[-1]:
        _fail(f"classify gives {logits.shape[-1]} columns but tcam has {out.tcam.shape[-1]}")


def _check_shapes(factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, **_: Any) -> None:
    head = factory(num_classes=c, feature_dim=d_in).eval()
    with torch.no_grad():
        _check_outputs(head, case, case.features, torch.float32)


def _check_float64(factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, **_: Any) -> None:
    head = factory(num_classes=c, feature_dim=d_in).double().eval()
    with torch.no_grad():
        _check_outputs(head, case, case.features.double(), torch.float64)
        _, out = _run(head, case.features.double(), case.mask)
        cls, aux = _losses(head, out, case.labels.double(), case.mask)
    for name, value in {"classification_loss": cls, **aux}.items():
        if value.dtype != torch.float64:
            _fail(f"{name} has dtype {value.dtype} for float64 inputs; take dtype and device from the inputs")


def _check_mask(factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, atol: float, rtol: float) -> None:
    if bool(case.mask.all()):
        return
    head = factory(num_classes=c, feature_dim=d_in).eval()
    with torch.no_grad():
        _, clean = _run(head, case.features, case.mask)
        _, noisy = _run(head, case.garbage, case.mask)
        for name, a in _fields(clean).items():
            b = _fields(noisy)[name]
            if name != "video_scores":
                a, b = a[case.mask], b[case.mask]
            _close(a, b, f"{name} changed when only padded snippets changed", atol, rtol)
        noisy_losses = _named_losses(head, noisy, case)
        for name, value in _named_losses(head, clean, case).items():
            _close(value, noisy_losses[name], f"{name} changed when only padded snippets changed", atol, rtol)


def _named_losses(head: Any, out: HeadOutput, case: CheckCase) -> dict[str, Tensor]:
    cls, aux = _losses(head, out, case.labels, case.mask)
    return {"classification_loss": cls, **{f"auxiliary_loss[{k!r}]": v for k, v in sorted(aux.items())}}


def _check_padded(factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, atol: float, rtol: float) -> None:
    head = factory(num_classes=c, feature_dim=d_in).eval()
    with torch.no_grad():
        _, batch_out = _run(head, case.garbage, case.mask)
        batch_losses = _named_losses(head, batch_out, case)
        singles: list[dict[str, Tensor]] = []
        for b, n in enumerate(case.lengths):
            feats = case.features[b : b + 1, :n]
            mask = torch.ones(1, n, dtype=torch.bool)
            _, one = _run(head, feats, mask)
            for name, value in _fields(one).items():
                mine = _fields(batch_out)[name][b : b + 1]
                if name != "video_scores":
                    mine = mine[:, :n]
                _close(mine, value, f"{name} of video {b} (length {n}) in the padded batch vs alone", atol, rtol)
            single_case = copy.copy(case)
            single_case.labels, single_case.mask = case.labels[b : b + 1], mask
            singles.append(_named_losses(head, one, single_case))
        for name, value in batch_losses.items():
            mean = torch.stack([s[name] for s in singles]).mean()
            _close(value, mean, f"{name} of the padded batch vs the mean of the per-video losses", atol, rtol)


def _check_classify(factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, atol: float, rtol: float) -> None:
    head = factory(num_classes=c, feature_dim=d_in).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x = torch.randn(2, 6, head.embed_dim, generator=gen)  # (B, n, d): unordered "representative snippets"
        logits = head.classify(x)
        if logits.shape[:-1] != x.shape[:-1]:
            _fail(f"classify maps (..., d) to (..., K): got {tuple(logits.shape)} for input {tuple(x.shape)}")
        perm = torch.randperm(6, generator=gen)
        _close(head.classify(x[:, perm]), logits[:, perm], "classify of permuted snippets vs permuted classify",
               atol, rtol)
        _close(head.classify(x.reshape(12, -1)), logits.reshape(12, -1), "classify of (n, d) vs (B, n, d)", atol, rtol)
        _close(head.classify(x[0, 0]), logits[0, 0], "classify of one (d,) snippet vs in a batch", atol, rtol)


def _check_optional(factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, atol: float, rtol: float) -> None:
    head = factory(num_classes=c, feature_dim=d_in).eval()
    traits = head_traits(head)
    declared = declared_recipe_attributes(head)
    if declared:
        _fail(recipe_attribute_message(head, declared))
    with torch.no_grad():
        _, out = _run(head, case.features, case.mask)
        if traits.representative_scores:
            reps = torch.randn(2, 5, head.embed_dim, generator=torch.Generator().manual_seed(3))  # (B, n, d)
            scores = head.representative_scores(reps)
            if tuple(scores.shape) != (2, 5, c):
                _fail(f"representative_scores maps (B, n, d) = (2, 5, {head.embed_dim}) to {tuple(scores.shape)}, "
                      f"expected (B, n, C) = (2, 5, {c})")
            if not bool(((scores >= 0) & (scores <= 1)).all()):
                _fail("representative_scores must be probabilities in [0, 1]")
        if traits.fuse:
            fused = head.fuse([out, out], [0.6, 0.4])
            if not isinstance(fused, HeadOutput):
                _fail(f"fuse must return a HeadOutput, got {type(fused).__name__}")
            for name, value in _fields(out).items():
                if _fields(fused).get(name) is None or _fields(fused)[name].shape != value.shape:
                    _fail(f"fuse changed the shape of {name}")
            _close(fused.video_scores, out.video_scores, "fuse of two equal branches with weights summing to 1 "
                   "(video_scores)", atol, rtol)


def _check_factored(factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, atol: float, rtol: float) -> None:
    """``forward_branches`` (optional) equals the head on each walked feature tensor, values and gradients."""
    head = factory(num_classes=c, feature_dim=d_in).double().eval()
    if not head_traits(head).forward_branches:
        return
    gen = torch.Generator().manual_seed(5)
    feats = head.embed(case.garbage.double(), case.mask).detach().requires_grad_()
    batch, d = feats.shape[0], feats.shape[-1]
    reps = torch.randn(batch, 4, d, generator=gen, dtype=torch.float64).requires_grad_()
    memory = torch.randn(batch, 6, d, generator=gen, dtype=torch.float64)
    memory_mask = torch.rand(batch, 6, generator=gen) < 0.7
    walked = [birw_factors(feats, reps, 0.5, 5.0, case.mask),
              birw_factors(feats, memory, 0.5, 5.0, case.mask, reps_mask=memory_mask)]
    fast = list(head.forward_branches(feats, case.mask, walked))
    slow = [head(feats, case.mask)] + [head(w.dense(), case.mask) for w in walked]
    if len(fast) != len(slow):
        _fail(f"forward_branches returned {len(fast)} outputs for 2 walks; expected 3 (main first)")
    labels = case.labels.double()
    grads = []
    for outs in (fast, slow):
        total = sum(_total(head, o, labels, case.mask) for o in outs)
        total = total + sum((o.cas * case.mask[..., None]).sum() + o.tcam[case.mask].sum() for o in outs)
        inputs = [feats, reps] + [q for q in head.parameters() if q.requires_grad]
        grads.append(torch.autograd.grad(total, inputs, retain_graph=True, allow_unused=True))
    for i, (a, b) in enumerate(zip(fast, slow)):
        for name, value in _fields(b).items():
            mine = _fields(a).get(name)
            if mine is None:
                _fail(f"forward_branches output {i} has no {name}")
            if name != "video_scores":
                mine, value = mine[case.mask], value[case.mask]
            _close(mine, value, f"forward_branches output {i} vs the head on the walked features ({name})", atol, rtol)
    names = ["features", "representatives"] + [n for n, q in head.named_parameters() if q.requires_grad]
    for name, a, b in zip(names, *grads):
        if (a is None) != (b is None):
            _fail(f"forward_branches: gradient of {name} is {'missing' if a is None else 'extra'}")
        if a is not None:
            _close(a, b, f"forward_branches: gradient of the losses w.r.t. {name}", atol, rtol)


def _check_gradients(factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, **_: Any) -> None:
    head = factory(num_classes=c, feature_dim=d_in).train()
    torch.manual_seed(0)
    _, out = _run(head, case.garbage, case.mask)
    _total(head, out, case.labels, case.mask).backward()
    missing = [n for n, p in head.named_parameters() if p.requires_grad and p.grad is None]
    if missing:
        _fail(f"no gradient reaches these parameters from the head's losses: {', '.join(missing)}")
    bad = [n for n, p in head.named_parameters() if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    if bad:
        _fail(f"NaN/Inf gradients in: {', '.join(bad)}")


def _check_scalars(factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, **_: Any) -> None:
    head = factory(num_classes=c, feature_dim=d_in).train()
    torch.manual_seed(0)
    _, out = _run(head, case.garbage, case.mask)
    aux = head.auxiliary_loss(out, case.labels, case.mask)
    if not isinstance(aux, dict):
        _fail(f"auxiliary_loss must return a dict of named scalar tensors, got {type(aux).__name__}")
    for name, value in _named_losses(head, out, case).items():
        if not isinstance(value, Tensor) or value.dim() != 0:
            _fail(f"{name} must be a scalar tensor, got {getattr(value, 'shape', type(value).__name__)}")
        if not bool(torch.isfinite(value)):
            _fail(f"{name} is not finite: {value.item()}")
        if not value.requires_grad and any(p.requires_grad for p in head.parameters()):
            _fail(f"{name} does not depend on any parameter (it has no gradient)")


def _check_determinism(
    factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, atol: float, rtol: float
) -> None:
    outs = []
    for _ in range(2):
        torch.manual_seed(1234)
        head = factory(num_classes=c, feature_dim=d_in).train()
        _, out = _run(head, case.garbage, case.mask)  # training mode: dropout draws from the seeded generator
        outs.append((head.state_dict(), out, _named_losses(head, out, case)))
    (sd_a, out_a, loss_a), (sd_b, out_b, loss_b) = outs
    for key in sd_a:
        _close(sd_a[key].float(), sd_b[key].float(), f"parameter/buffer {key!r} after building twice under one seed",
               0.0, 0.0)
    for name, value in _fields(out_a).items():
        _close(value.detach(), _fields(out_b)[name].detach(), f"training-mode {name} under one seed", 0.0, 0.0)
    for name, value in loss_a.items():
        _close(value.detach(), loss_b[name].detach(), f"training-mode {name} under one seed", 0.0, 0.0)


def _check_state_dict(
    factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, atol: float, rtol: float
) -> None:
    torch.manual_seed(1)
    source = factory(num_classes=c, feature_dim=d_in).eval()
    torch.manual_seed(2)
    target = factory(num_classes=c, feature_dim=d_in).eval()
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        _, a = _run(source, case.features, case.mask)
        _, b = _run(target, case.features, case.mask)
    for name, value in _fields(a).items():
        _close(value, _fields(b)[name], f"{name} after a state_dict save/load into a differently seeded head", 0.0, 0.0)


def _check_wrapper(factory: Callable[..., Any], case: CheckCase, c: int, d_in: int, **_: Any) -> None:
    torch.manual_seed(0)
    model = RSKPWrapper(factory(num_classes=c, feature_dim=d_in), RSKPConfig(memory=MemoryConfig(warmup_epochs=0)))
    model.train()
    batches = [(case.features, case.mask, case.labels)]
    for epoch, step in enumerate(("warm-up step", "step with the memory bank")):
        model.start_epoch(epoch, memory_batches=batches)  # the schedule fills the bank before epoch 1
        model.zero_grad()
        out = model(case.garbage, mask=case.mask, labels=case.labels)
        if out.loss is None or out.loss.dim() != 0 or not bool(torch.isfinite(out.loss)):
            _fail(f"RSKPWrapper {step}: loss must be a finite scalar, got {out.loss}")
        out.loss.backward()
        bad = [n for n, p in model.named_parameters() if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        if bad:
            _fail(f"RSKPWrapper {step}: NaN/Inf gradients in {', '.join(bad)}")
    if out.inter is None:
        _fail("RSKPWrapper step with the memory bank: the inter-video branch did not run")


CHECK_FUNCTIONS = {
    "structure": _check_structure,
    "shapes_and_dtypes": _check_shapes,
    "float64": _check_float64,
    "mask_handling": _check_mask,
    "padded_batch_equals_single": _check_padded,
    "snippetwise_classify": _check_classify,
    "optional_members": _check_optional,
    "factored_branches": _check_factored,
    "finite_gradients": _check_gradients,
    "scalar_losses": _check_scalars,
    "determinism": _check_determinism,
    "state_dict_round_trip": _check_state_dict,
    "rskp_wrapper_step": _check_wrapper,
}
