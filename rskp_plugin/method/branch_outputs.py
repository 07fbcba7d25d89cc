"""Every branch of one inference pass and the distillation teacher as a prediction, for diagnostics
(``RSKPWrapper.branch_outputs``, read by ``engine.diagnostics``); never used in training.

Symbols: B batch, T snippets, D input feature size, d embedding size, C action classes, K TCAM columns.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..protocols import HeadOutput, Propagated
from .model import Branches, RSKPOutput, validate_inputs
from .walks import scores_output


@torch.no_grad()
def branch_outputs(model: Any, features: Tensor, mask: Tensor | None = None, labels: Tensor | None = None) -> Branches:
    """Inference with every branch and the distillation teacher of an ``RSKPWrapper`` (the model's mode is kept).

    The fused prediction, main and intra are computed exactly as ``model(features, mask)`` does, so they are the
    same numbers. Where ``labels`` are given and the memory bank is ready, the inter branch reads the memory of those
    classes (at test time the caller passes the ground-truth video labels: an oracle for this branch only) and the
    teacher is the pseudo-label TCAM of eq. 7, T = w intra.tcam + (1 - w) inter.tcam (w =
    ``fusion.pseudo_label_intra``); before that the teacher is the intra branch itself. Other ``rskp.teacher``
    settings are followed as in training (``Teacher.pseudo_labels``): ``source: ensemble`` fuses main in. Under
    ``propagation.inter_fusion: early`` the memory's branch is the one walk over [mu^a; mu^e], which training uses
    in place of intra and inter: it is the teacher's walk, and ``inter`` stays None.

    The teacher as a prediction is the head run on the blended walked features w F^a + (1 - w) F^e (one more
    factored walk; with ``ensemble``, t F + (1 - t) of that, t = ``fusion.test_main``). Where the head's TCAM
    is affine in its input (STPN, BM, WUM) that TCAM equals T (checked per batch) and the prediction follows the
    head's own rules everywhere ("head"). Otherwise (FAC-Net's cosine classifier and ``propagation.method: scores``,
    whose branches are TCAMs only) its TCAM is replaced by T and its CAS recomputed as softmax(T)[..., :C] x
    attention, FAC-Net's and RSKP's CAS rule ("softmax").

    Args:
        model: an ``RSKPWrapper``; features: (B, T, D); mask: (B, T) bool or None; labels: (B, C) multi-hot or None.

    Returns:
        Branches.
    """
    features, mask = validate_inputs(model.head, features, mask, labels)
    walk = model.walk
    feats = model.embed(features, mask)  # (B, T, d)
    sel, scored = model.select_representatives(feats, mask)  # the representatives of ``rskp.summarizer``, as training makes them
    reps = sel.reps  # (B, n, d)
    # ``forward(features, mask)``'s walk (the same numbers), keeping F^a
    (main, intra), walked = model.run_branches(feats, mask, [(reps, sel.reps_mask)], sel, scored)
    fused = model.fuse(main, intra)
    late = walk.inter_fusion == "late"
    second = None  # the walk that reads the memory: inter (late) or the one over [mu^a; mu^e] (early)
    if labels is not None and model.memory_ready:
        mem, mem_mask = model.memory.retrieve(labels)
        second = walk.fuse([(reps, sel.reps_mask), (mem.to(feats.dtype), mem_mask)])[-1]
    if not walk.walks_features:
        other = None if second is None else walk.scores(model.head, sel.features, mask, [second], main=scored)[1]
        inter, teacher, rule = _score_teacher(model, main, intra, other, late)
    else:
        walk_e = None if second is None else sel.rebase(walk.features(sel.features, [second], mask), feats, mask)[0]
        inter, teacher, rule = _teacher(model, feats, mask, main, intra, walked[0], walk_e, late)
    output = RSKPOutput(fused.video_scores, fused.cas, main.attention, main, intra, inter, reps, {}, None,
                        fused.score_cas)
    return Branches(output, teacher, rule)


def _teacher(model: Any, feats: Tensor, mask: Tensor, main: HeadOutput, intra: HeadOutput, walk_a: Propagated, walk_e: Propagated | None, late: bool) -> tuple[HeadOutput | None, HeadOutput, str]:
    """(inter, teacher, rule) of ``branch_outputs``; inter is None where the inter walk ``walk_e`` did not run.

    feats (B, T, d); walk_a, walk_e the intra walk and the one reading the memory (inter, or under early fusion the
    walk over [mu^a; mu^e]). The target is ``Teacher.pseudo_labels`` (the configured ``rskp.teacher``); the
    teacher's walk is the same convex blend of F, F^a and F^e as its logits.
    """
    teacher = model.teacher
    w = teacher.intra_weight
    if walk_e is None and teacher.official:  # warm-up: the teacher is the intra branch itself
        return None, intra, "intra"
    blend = walk_a
    if walk_e is not None and late:
        # w F^a + (1 - w) F^e = s F + [w Z^a, (1 - w) Z^e] [M^a; M^e]: both walks have the same s
        blend = Propagated(feats, walk_a.scale, torch.cat([w * walk_a.z, (1.0 - w) * walk_e.z], dim=-1),
                           torch.cat([walk_a.m, walk_e.m], dim=1))
    elif walk_e is not None:  # early fusion: the walk over [mu^a; mu^e] is the teacher's walk
        blend = walk_e
    if not teacher.official:  # t F + (1 - t) blend: main fused in, as the test-time prediction
        t = teacher.main_weight
        blend = blend._replace(scale=t * mask.to(blend.scale.dtype) + (1.0 - t) * blend.scale, z=(1.0 - t) * blend.z)
    _, *on_walks = model.run_head(feats, mask, ([walk_e] if walk_e is not None else []) + [blend])
    on_blend = on_walks[-1]
    other = on_walks[0] if walk_e is not None else None
    target = _target(teacher, main, intra, other, late)
    tol = 1e-3 if target.dtype in (torch.float32, torch.float64) else 5e-2
    scale = float(target.detach().abs().amax()) if target.numel() and bool(torch.isfinite(target).all()) else 0.0
    inter = other if late else None
    if on_blend.tcam.shape == target.shape and bool(((on_blend.tcam - target).abs() <= tol * (1.0 + scale)).all()):
        return inter, on_blend._replace(tcam=target), "head"
    # not affine: softmax(T)[..., :C] x attention
    return inter, scores_output(on_blend, target, model.head.num_classes), "softmax"


def _target(teacher: Any, main: HeadOutput, intra: HeadOutput, other: HeadOutput | None, late: bool) -> Tensor:
    """The pseudo-labels of the distillation loss (B, T, K), as training forms them: from intra and inter (late),
    or from the early-fused branch ``other`` alone once it ran."""
    if late or other is None:
        return teacher.pseudo_labels(main, intra, other)
    return teacher.pseudo_labels(main, other, None)


def _score_teacher(model: Any, main: HeadOutput, intra: HeadOutput, other: HeadOutput | None, late: bool) -> tuple[HeadOutput | None, HeadOutput, str]:
    """(inter, teacher, rule) of ``branch_outputs`` under ``propagation.method: scores``: the branches are TCAMs,
    so the teacher is main with the pseudo-label TCAM and the "softmax" CAS rule, as each of those branches is."""
    if other is None and model.teacher.official:  # warm-up: the teacher is the intra branch itself
        return None, intra, "intra"
    target = _target(model.teacher, main, intra, other, late)
    return (other if late else None), scores_output(main, target, model.head.num_classes), "softmax"
