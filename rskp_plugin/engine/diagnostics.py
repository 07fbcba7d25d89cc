"""Per-epoch diagnostics of a run: loss terms, and the detection / classification mAP of every branch.

At each evaluation epoch ``Trainer`` records (``train.diagnostics``, default on):

* ``losses``: the mean of each loss term of ``RSKPOutput.losses`` (``cls/main``, ``cls/intra``, ``cls/inter``,
  ``distill``, ``att_norm``, ``aux/*``; already weighted, as they enter the total) over the training videos of the
  epoch just trained (per-video mean, like ``train_loss``);
* ``branches``: on the test set, detection mAP (AVG and per tIoU) and classification mAP of

  - ``fused``: the test-time prediction the run reports (the same numbers as ``test``);
  - ``main``, ``intra``: the head on F and on the intra-video walk F^a;
  - ``inter``: the head on the inter-video walk F^e, once the memory bank is ready (null before). At test time the
    memory is read for the video's GROUND-TRUTH classes (an oracle the real prediction never gets: this branch
    only says how good the inter-video pseudo-labels could be);
  - ``teacher``: the distillation pseudo-labels T = w intra.tcam + (1 - w) inter.tcam (intra.tcam during warm-up)
    scored as if they were a prediction (``RSKPWrapper.branch_outputs`` explains how its CAS is made: the head's
    own rules where its TCAM is affine in the features, else softmax(T)[..., :C] x attention);

  each localised with the head's own ``LocalizationSettings``. The head alone records ``main`` (= ``fused``).

Cost: every branch comes from the one inference pass that produces the fused prediction
(``RSKPWrapper.branch_outputs``), and all branches of a video are localised in one call (their CAS side by side,
as if they were more classes: proposals, scores and NMS are per class, so the detections are the same), except for
heads whose rules couple classes (attention-threshold proposals, argmax fallback: WUM), which are localised branch
by branch. benchmarks/RESULTS.md ("Diagnostics") has the measured overhead.

``metrics.jsonl`` in the run folder holds one JSON object per evaluation epoch (``metrics_line``, schema in
README.md "Diagnostics"); ``explain_gap`` turns two runs' records into the sentence ``rskp-bench`` prints when
RSKP's row is below the head's.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .inference import EvalResult, forward_batches, host, score_detections
# metrics.jsonl and TensorBoard are the run record's; re-exported where callers have always found them
from .loggers import BRANCHES, TensorBoardLogger, metrics_line, read_metrics, write_metrics  # noqa: F401

INTER_CLASSES = "ground_truth"  # which classes the inter branch reads the memory of at test time


class LossMeter:
    """Per-video means of named loss terms over an epoch, summed on the device (no synchronisation per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.videos = 0

    def add(self, losses: dict[str, Tensor], videos: int) -> None:
        """Add one forward pass: ``losses`` are batch means over ``videos`` videos."""
        for name, value in losses.items():
            term = value.detach().to(torch.promote_types(value.dtype, torch.float32)) * videos  # float64 stays
            self.sums[name] = self.sums[name] + term if name in self.sums else term
        self.videos += videos

    def means(self, reduce: Callable[[float], float] | None = None) -> dict[str, float]:
        """Mean per video of every term, keys sorted; ``reduce`` sums a float over processes (data-parallel)."""
        reduce = reduce or (lambda x: x)
        total = reduce(float(self.videos))
        return {name: reduce(float(self.sums[name])) / max(total, 1.0) for name in sorted(self.sums)}


def _arrays(out: Any, rows: int, lengths: list[int]) -> list[tuple[Any, Any, Any, Any]]:
    """Per-video (scores (C,), cas (T, C), attention (T,) or None, score_cas (T, C) or None) of a HeadOutput."""
    vs, cs = host(out.video_scores), host(out.cas)
    att = host(out.attention) if out.attention is not None else None
    sc = host(out.score_cas) if out.score_cas is not None else None
    return [
        (vs[r], cs[r, :n], att[r, :n] if att is not None else None, sc[r, :n] if sc is not None else None)
        for r, n in zip(range(rows), lengths)
    ]


def collect_branches(
    model: nn.Module, dataset: Any, *, collate: Callable[[Sequence[Any]], Any], device: torch.device,
    batch_size: int = 16, progress: Any = None, label: str = "evaluating",
) -> tuple[tuple, dict[str, tuple], str]:
    """One inference pass over ``dataset`` returning every prediction (``model.branch_outputs``, ground-truth
    labels for the inter branch).

    Returns:
        The fused outputs in ``collect_outputs``' form (scores, cas, attention, score_cas), the same for each
        branch that ran ({"main", "intra", "inter", "teacher"} as available), and the teacher rule.
    """
    n = len(dataset.videos)
    fused: list[list[Any]] = [[None] * n for _ in range(4)]
    branches: dict[str, list[Any]] = {}
    rules: set[str] = set()
    task = progress.add_task(label, total=n) if progress is not None else None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for features, mask, labels, idx in forward_batches(dataset, batch_size, device, collate):
                b = model.branch_outputs(features, mask=mask, labels=labels)
                out = b.output
                lengths = mask.sum(dim=1).tolist()
                # the fused prediction exactly as ``collect_outputs`` reads it
                fake = out.main._replace(video_scores=out.video_scores, cas=out.cas, attention=out.attention,
                                         score_cas=out.score_cas)
                for i, arrays in zip(idx, _arrays(fake, len(idx), lengths)):
                    for j in range(4):
                        fused[j][i] = arrays[j]
                if b.teacher_rule:
                    rules.add(b.teacher_rule)
                for name, head_out in (("main", out.main), ("intra", out.intra), ("inter", out.inter),
                                       ("teacher", b.teacher)):
                    if head_out is None:
                        continue
                    store = branches.setdefault(name, [None] * n)
                    for i, arrays in zip(idx, _arrays(head_out, len(idx), lengths)):
                        store[i] = arrays
                if task is not None:
                    progress.advance(task, len(idx))
    finally:
        model.train(was_training)
        if task is not None:
            progress.remove_task(task)
    fused_out = (fused[0], fused[1], fused[2], fused[3] if any(x is not None for x in fused[3]) else None)
    per_branch = {}
    for name, rows in branches.items():
        if any(r is None for r in rows):  # a branch that ran for only some batches is not comparable: leave it out
            continue
        cols = list(zip(*rows))
        per_branch[name] = (list(cols[0]), list(cols[1]), list(cols[2]) if cols[2][0] is not None else None,
                            list(cols[3]) if cols[3][0] is not None else None)
    rule = "/".join(sorted(rules))
    return fused_out, per_branch, rule


def localize_branches(outputs: dict[str, tuple], dataset: Any, settings: Any) -> dict[str, list[Any]]:
    """Detections (``localization.Detections``, per video in dataset order) of every prediction in ``outputs``
    (name -> ``collect_outputs``' tuple); the same as ``localize_outputs`` of each.

    Where the rules treat classes independently (no attention-threshold proposals, no argmax fallback) the
    predictions of a video are localised in one call with their CAS side by side (P predictions x C classes):
    thresholds, runs, scores and NMS are per class, so each prediction's detections, and their order, are those it
    gets alone (``tests/engine/test_diagnostics.py`` checks it), for a fraction of the cost.
    """
    from ..localization import localize_video

    names = list(outputs)
    videos = dataset.videos
    factors = np.broadcast_to(np.asarray(dataset.snippets_per_second, dtype=np.float64), (len(videos),))
    if settings.attention_thresholds or settings.fallback_argmax or len(names) == 1:
        return {name: [
            localize_video(out[0][i], out[1][i], None if out[2] is None else out[2][i], settings,
                           snippets_per_second=float(factors[i]), score_cas=None if out[3] is None else out[3][i])
            for i in range(len(videos))
        ] for name, out in outputs.items()}
    c = len(dataset.class_names)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for i in range(len(videos)):
        scores = np.concatenate([outputs[n][0][i] for n in names])  # (P*C,)
        cas = np.concatenate([outputs[n][1][i] for n in names], axis=1)  # (T, P*C)
        # a prediction without its own scoring signal is scored on its CAS, as ``localize`` does
        score_cas = np.concatenate([outputs[n][1][i] if outputs[n][3] is None else outputs[n][3][i] for n in names],
                                   axis=1)
        det = localize_video(scores, cas, None, settings, snippets_per_second=float(factors[i]), score_cas=score_cas)
        owner, label = np.divmod(det.labels, c)
        for j, name in enumerate(names):
            keep = owner == j
            results[name].append(type(det)(label[keep], det.starts[keep], det.ends[keep], det.scores[keep]))
    return results


def as_results(detections: Sequence[Any], dataset: Any) -> dict[str, Any]:
    """Per-video ``Detections`` as the ActivityNet results object ``localize`` returns."""
    classes = list(dataset.class_names)
    return {"version": "VERSION 1.3", "external_data": {"used": False, "details": ""}, "results": {
        str(v.name): [{"label": classes[lab], "score": sc, "segment": [st, en]}
                      for lab, sc, st, en in zip(d.labels.tolist(), d.scores.tolist(), d.starts.tolist(),
                                                 d.ends.tolist())]
        for v, d in zip(dataset.videos, detections)
    }}


def score_arrays(detections: Sequence[Any], scores: Sequence[np.ndarray], dataset: Any, ground_truth: Any, *,
                 tiou: Sequence[float], protocol: str = "activitynet") -> EvalResult:
    """``score_detections(as_results(detections, dataset), ...)`` without building the Python objects.

    Args:
        detections: per video ``Detections``, dataset order.
        scores: per video (C,) video scores.
        ground_truth: ``evaluation.load_ground_truth(dataset.ground_truth())``, loaded once per pass.
    """
    from ..evaluation import Predictions, classification_map, evaluate_arrays, tiou_array

    gt_index = {name: i for i, name in enumerate(ground_truth.class_names)}
    to_gt = np.array([gt_index.get(name, -1) for name in dataset.class_names], dtype=np.int64)
    vid_index = {name: i for i, name in enumerate(ground_truth.videos)}
    videos = list(ground_truth.videos)
    owner, label, start, end, score = [], [], [], [], []
    for video, det in zip(dataset.videos, detections):
        lab = to_gt[det.labels]
        keep = lab >= 0  # classes without ground truth are left out, as ``score_detections`` does
        if str(video.name) not in vid_index:
            vid_index[str(video.name)] = len(videos)
            videos.append(str(video.name))
        owner.append(np.full(int(keep.sum()), vid_index[str(video.name)], dtype=np.int64))
        label.append(lab[keep])
        start.append(det.starts[keep].astype(np.float64))
        end.append(det.ends[keep].astype(np.float64))
        score.append(det.scores[keep].astype(np.float64))
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    pred = Predictions("<branch predictions>", tuple(videos), cat(owner, np.int64), cat(label, np.int64),
                       cat(start, np.float64), cat(end, np.float64), cat(score, np.float64))
    result = evaluate_arrays(
        ground_truth, pred, tiou_array(tuple(tiou)), protocol=protocol, order="official",
        snippets_per_second=dataset.snippets_per_second, ambiguous=dict(dataset.ambiguous) or None,
        zero_map_if_class_missing=None,
    )
    labels = np.stack([np.asarray(v.labels, dtype=np.float64) for v in dataset.videos])
    cmap = classification_map(np.stack(scores).astype(np.float64), labels, skip_empty=True)
    maps = tuple(100.0 * x for x in np.asarray(result.map, dtype=np.float64).tolist())
    per_class = np.asarray(result.per_class_ap, dtype=np.float64)  # (n, C) fractions
    return EvalResult(tiou=tuple(float(t) for t in tiou), map=maps, average=100.0 * float(result.average),
                      cmap=100.0 * float(cmap), detections=int(sum(len(d.labels) for d in detections)),
                      per_class_ap={name: tuple(100.0 * x for x in per_class[:, c].tolist())
                                    for c, name in enumerate(result.class_names)})


def entry(result: EvalResult) -> dict[str, Any]:
    """A branch's metrics entry: {"avg", "per_tiou": {"0.1": mAP, ...}, "cmap", "detections"} (percent)."""
    return {
        "avg": result.average, "per_tiou": {f"{t:g}": m for t, m in zip(result.tiou, result.map)},
        "cmap": result.cmap, "detections": result.detections,
    }


def evaluate_branches(
    model: nn.Module, dataset: Any, *, collate: Callable[[Sequence[Any]], Any], device: torch.device,
    batch_size: int = 16, tiou: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7), protocol: str = "activitynet",
    progress: Any = None, label: str = "test",
) -> tuple[EvalResult, dict[str, Any]]:
    """``evaluate_model`` (the same fused numbers) plus every branch, from one inference pass.

    The fused prediction is localised together with the branches (``localize_branches``: the same detections)
    and scored through the ActivityNet results object exactly as ``evaluate_model`` scores it.

    Returns:
        The fused ``EvalResult`` and {"branches": {name: entry or None for each of BRANCHES}, "teacher_rule",
        "inter_classes", "diagnostics_s": seconds spent scoring the branches (their share of the joint
        localisation, in proportion to their number, plus their mAP)}.
    """
    from ..evaluation import load_ground_truth
    settings = model.traits.settings
    fused_out, outputs, rule = collect_branches(
        model, dataset, collate=collate, device=device, batch_size=batch_size, progress=progress,
        label=f"evaluating on {label}",
    )
    copies = {}  # branches whose prediction is another one's: scored once
    if "intra" not in outputs or not model.use_intra_at_test:
        copies["main"] = "fused"
    if rule == "intra":
        copies["teacher"] = "intra"
    todo = {"fused": fused_out, **{name: out for name, out in outputs.items() if name not in copies}}
    started = time.perf_counter()
    detections = localize_branches(todo, dataset, settings)
    localized = time.perf_counter() - started
    ground_truth = dataset.ground_truth()
    fused = score_detections(as_results(detections["fused"], dataset), fused_out[0], dataset, tiou=tiou,
                             protocol=protocol, ground_truth=ground_truth)
    started = time.perf_counter()
    branches: dict[str, Any] = {name: None for name in BRANCHES}
    branches["fused"] = entry(fused)
    if len(todo) > 1:
        loaded = load_ground_truth(ground_truth)
        for name in todo:
            if name != "fused":
                branches[name] = entry(score_arrays(detections[name], outputs[name][0], dataset, loaded, tiou=tiou,
                                                    protocol=protocol))
    for name, source in copies.items():
        if name in outputs:
            branches[name] = branches[source]
    info = {
        "branches": branches, "teacher_rule": rule or None,
        "inter_classes": INTER_CLASSES if branches["inter"] is not None else None,
        "diagnostics_s": time.perf_counter() - started + localized * (len(todo) - 1) / len(todo),
    }
    return fused, info


# ---------------------------------------------------------------------------------------------------- bench
def explain_gap(head_run: dict[str, Any], rskp_run: dict[str, Any]) -> dict[str, Any] | None:
    """Why RSKP's reported AVG is below the head's on one seed, from the two runs' per-epoch diagnostics.

    The rule (README.md "Diagnostics"), at RSKP's selected epoch, every finding that holds, in this order:

    1. teacher AVG < main AVG: the pseudo-labels are worse than the student they are distilled into;
    2. fused AVG < main AVG: fusing the intra branch at test time costs the difference;
    3. RSKP's main AVG < the head alone's reported AVG: training with RSKP made the head itself worse; the loss
       term shared by both runs (cls/main, att_norm, aux/*) whose value at that epoch is the most above the head
       alone's is named;
    4. none of these: the AVGs of main and teacher are stated.

    Args:
        head_run, rskp_run: per-seed entries of ``rskp-bench`` (``avg_map_percent``, ``epoch``, ``diagnostics``).

    Returns:
        None when RSKP is not below the head; else {"seed", "gap", "epoch", "findings": [...], "message"}.
    """
    gap = rskp_run["avg_map_percent"] - head_run["avg_map_percent"]
    if gap >= 0:
        return None
    epoch = rskp_run["epoch"]
    lines = {d["epoch"]: d for d in rskp_run.get("diagnostics") or []}
    alone = {d["epoch"]: d for d in head_run.get("diagnostics") or []}
    findings: list[str] = []
    line = lines.get(epoch)
    if line is None or line["branches"].get("main") is None:
        findings.append("no diagnostics recorded at the selected epoch (train.diagnostics=false?)")
    else:
        b = line["branches"]
        main, fused, teacher = b["main"]["avg"], b["fused"]["avg"], (b.get("teacher") or {}).get("avg")
        if teacher is not None and teacher < main:
            findings.append(f"teacher AVG {teacher:.1f} < main {main:.1f} at epoch {epoch}: the pseudo-labels are "
                            "worse than the student")
        if fused < main:
            findings.append(f"fused AVG {fused:.1f} < main {main:.1f}: fusing the intra branch at test time costs "
                            f"{main - fused:.1f}")
        if main < head_run["avg_map_percent"]:
            text = (f"RSKP's main branch {main:.1f} < head alone {head_run['avg_map_percent']:.1f}: training with "
                    "RSKP made the head itself worse")
            term = _grown_term(line.get("losses", {}), (alone.get(epoch) or {}).get("losses", {}))
            if term is not None:
                name, ours, theirs = term
                text += f"; {name} {ours:.3g} vs {theirs:.3g} alone at epoch {epoch}"
            findings.append(text)
        if not findings:
            findings.append(f"main AVG {main:.1f}, teacher {teacher if teacher is not None else float('nan'):.1f} at "
                            f"epoch {epoch}: no branch is below the student; the head alone's epoch "
                            f"{head_run['epoch']} is simply better")
    seed = rskp_run.get("seed")
    message = f"RSKP below head on seed {seed} ({gap:+.1f} AVG): " + "; ".join(findings)
    return {"seed": seed, "gap": gap, "epoch": epoch, "findings": findings, "message": message}


def _grown_term(ours: dict[str, float], alone: dict[str, float]) -> tuple[str, float, float] | None:
    """The shared loss term most above the head alone's value (relative), if any is above it."""
    best = None
    for name in sorted(set(ours) & set(alone)):
        rise = (ours[name] - alone[name]) / max(abs(alone[name]), 1e-12)
        if rise > 0 and (best is None or rise > best[0]):
            best = (rise, name)
    return None if best is None else (best[1], ours[best[1]], alone[best[1]])
