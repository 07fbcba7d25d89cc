"""Batched inference: padded batches under ``torch.inference_mode``, trimmed back to each video, then
localisation (TCAM -> detections) and detection / classification mAP."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import attrs
import numpy as np
import torch
from torch import Tensor, nn

from .batching import plan_microbatches


@attrs.frozen
class EvalResult:
    """Metrics of one evaluation pass, in percent (as the paper reports them).

    Attributes:
        tiou: IoU thresholds.
        map: detection mAP (%) per threshold.
        average: mean of ``map`` (the paper's AVG).
        cmap: video-level classification mAP (%).
        detections: number of detections produced.
        per_class_ap: AP (%) per threshold of every evaluated class (the classes with ground truth), by name.
    """

    tiou: tuple[float, ...]
    map: tuple[float, ...]
    average: float
    cmap: float
    detections: int
    per_class_ap: dict[str, tuple[float, ...]] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The record stored in ``results.json`` and checkpoints; keys name their unit (percent)."""
        return {
            "tiou": list(self.tiou), "map_percent": list(self.map), "avg_map_percent": self.average,
            "cmap_percent": self.cmap, "detections": self.detections,
            "per_class_ap_percent": {name: list(ap) for name, ap in self.per_class_ap.items()},
        }


def forward_batches(
    dataset: Any, batch_size: int, device: torch.device, collate: Callable[[Sequence[Any]], Any], *,
    sort_by_length: bool = True,
) -> Iterator[tuple[Tensor, Tensor, Tensor, np.ndarray]]:
    """Padded batches (features, mask, labels, video indices) of at most ``batch_size`` videos over a dataset.

    ``sort_by_length`` groups videos of similar length and cuts the sorted list where padding would cost more than
    another forward pass (``plan_microbatches``: the THUMOS14-shaped synthetic test set pads to 1.06x its snippets
    in batches of 32 instead of 1.35x in sorted runs of 32); otherwise the videos come in dataset order. Results
    are per video, so the batches do not change them (beyond float rounding).
    """
    videos = dataset.videos
    if sort_by_length:
        batches = plan_microbatches([len(v.features) for v in videos], batch_size)
    else:
        batches = [np.arange(i, min(i + batch_size, len(videos))) for i in range(0, len(videos), batch_size)]
    for idx in batches:
        batch = collate([videos[i] for i in idx])
        features = torch.as_tensor(batch.features)
        yield (
            features.to(device),
            torch.as_tensor(batch.mask).to(device),
            torch.as_tensor(batch.labels).to(device, torch.promote_types(features.dtype, torch.float32)),  # f64 stays
            idx,
        )


def collect_outputs(
    model: nn.Module, dataset: Any, *, collate: Callable[[Sequence[Any]], Any], device: torch.device,
    batch_size: int = 16, progress: Any = None, label: str = "evaluating",
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray | None], list[np.ndarray] | None]:
    """Inference outputs per video, in dataset order: video scores (C,), CAS (T, C), attention (T,) or None, and
    the proposal-scoring signal (T, C) per video for heads that have one (``RSKPOutput.score_cas``), else None."""
    n = len(dataset.videos)
    scores: list[Any] = [None] * n
    cas: list[Any] = [None] * n
    attention: list[Any] = [None] * n
    score_cas: list[Any] = [None] * n
    has_score_cas = False
    task = progress.add_task(label, total=n) if progress is not None else None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            # ``RSKPWrapper.inference`` computes only the reported prediction (a head alone has no such method)
            infer = getattr(model, "inference", model)
            for features, mask, _, idx in forward_batches(dataset, batch_size, device, collate):
                out = infer(features, mask=mask)
                lengths = mask.sum(dim=1).tolist()
                vs, cs = host(out.video_scores), host(out.cas)
                att = host(out.attention) if out.attention is not None else None
                sc = host(out.score_cas) if out.score_cas is not None else None
                has_score_cas = has_score_cas or sc is not None
                for row, (i, length) in enumerate(zip(idx, lengths)):
                    scores[i] = vs[row]
                    cas[i] = cs[row, :length]
                    attention[i] = att[row, :length] if att is not None else None
                    score_cas[i] = sc[row, :length] if sc is not None else None
                if task is not None:
                    progress.advance(task, len(idx))
    finally:
        model.train(was_training)
        if task is not None:
            progress.remove_task(task)
    return scores, cas, attention, (score_cas if has_score_cas else None)


def host(t: Tensor) -> np.ndarray:
    """A model output as a numpy array: float32, or float64 where the model runs in float64 (bf16/fp16 widen)."""
    return t.detach().to(torch.promote_types(t.dtype, torch.float32)).cpu().numpy()


def predict_detections(
    model: nn.Module, dataset: Any, *, collate: Callable[[Sequence[Any]], Any], device: torch.device,
    batch_size: int = 16, progress: Any = None, label: str = "predicting",
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """ActivityNet-format detections for every video of ``dataset`` and the video scores (dataset order)."""
    outputs = collect_outputs(
        model, dataset, collate=collate, device=device, batch_size=batch_size, progress=progress, label=label
    )
    return localize_outputs(outputs, dataset, model.traits.settings), outputs[0]


def localize_outputs(outputs: tuple, dataset: Any, settings: Any) -> dict[str, Any]:
    """ActivityNet-format detections from ``collect_outputs``' (scores, cas, attention, score_cas) per video."""
    from ..localization import localize

    scores, cas, attention, score_cas = outputs
    return localize(
        [v.name for v in dataset.videos], scores, cas, attention, settings, list(dataset.class_names),
        snippets_per_second=dataset.snippets_per_second, score_cas=score_cas,
    )


def evaluate_model(
    model: nn.Module, dataset: Any, *, collate: Callable[[Sequence[Any]], Any], device: torch.device,
    batch_size: int = 16, tiou: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7), protocol: str = "activitynet",
    progress: Any = None, label: str = "test",
) -> EvalResult:
    """Detection mAP at ``tiou`` (percent) and classification mAP of ``model`` on ``dataset``."""
    detections, scores = predict_detections(
        model, dataset, collate=collate, device=device, batch_size=batch_size, progress=progress,
        label=f"evaluating on {label}",
    )
    return score_detections(detections, scores, dataset, tiou=tiou, protocol=protocol)


def score_detections(
    detections: dict[str, Any], scores: Sequence[np.ndarray], dataset: Any, *, tiou: Sequence[float],
    protocol: str = "activitynet", ground_truth: dict[str, Any] | None = None,
) -> EvalResult:
    """Detection mAP (percent) of ActivityNet-format ``detections`` and classification mAP of the video
    ``scores`` (C,) per video, dataset order; ``ground_truth`` may pass ``dataset.ground_truth()`` when it is
    reused."""
    from ..evaluation import classification_map, detection_map

    ground_truth = dataset.ground_truth() if ground_truth is None else ground_truth
    # Detections of classes without ground truth in this set change no class's AP (mAP averages over the GT
    # classes); the evaluator refuses them, as the official ActivityNet code does, so leave them out here.
    gt_classes = {a["label"] for v in ground_truth["database"].values() for a in v["annotations"]}
    scored = {**detections, "results": {
        name: [d for d in dets if d["label"] in gt_classes] for name, dets in detections["results"].items()
    }}
    result = detection_map(
        ground_truth, scored, tuple(tiou), protocol=protocol,
        snippets_per_second=dataset.snippets_per_second, ambiguous=dict(dataset.ambiguous) or None,
    )
    labels = np.stack([np.asarray(v.labels, dtype=np.float64) for v in dataset.videos])
    cmap = classification_map(np.stack(scores).astype(np.float64), labels, skip_empty=True)
    count = sum(len(v) for v in detections.get("results", {}).values())
    maps = tuple(_percent(x) for x in np.asarray(result.map, dtype=np.float64).tolist())
    per_class = np.asarray(result.per_class_ap, dtype=np.float64)  # (n, C) fractions
    return EvalResult(
        tiou=tuple(float(t) for t in tiou), map=maps, average=_percent(float(result.average)),
        cmap=_percent(float(cmap)), detections=count,
        per_class_ap={name: tuple(_percent(x) for x in per_class[:, c].tolist())
                      for c, name in enumerate(result.class_names)},
    )


def _percent(x: float) -> float:
    """Metrics are reported in percent; the evaluation module returns fractions in [0, 1]."""
    return 100.0 * x
