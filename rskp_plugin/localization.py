"""TCAM -> proposals -> scores -> NMS -> detections. Never imports model code."""

from __future__ import annotations

import attrs
from attrs.validators import ge, gt, in_


def _rskp_thresholds() -> tuple[float, ...]:
    return tuple(round(0.001 + 0.002 * i, 6) for i in range(20))  # arange(0.001, 0.04, 0.002)


@attrs.frozen(kw_only=True)
class LocalizationSettings:
    """How a head's CAS becomes detections; defaults are the official RSKP code's (heads.md 1.9).

    Attributes:
        thresholds: CAS thresholds; every threshold yields proposals, all are pooled before NMS.
        attention_thresholds: thresholds on the attention/actionness signal (WUM's magnitude proposals).
        class_threshold: a class is localised in a video when its video score is at least this.
        fallback_argmax: if no class passes ``class_threshold``, localise the top-scoring class.
        min_length: proposals shorter than this (in CAS positions, after upsampling) are dropped.
        inflation: outer flank length as a fraction of the proposal length (0.25).
        outer_weight: kappa in score = mean(inner) - kappa * mean(outer).
        video_score_weight: adds this times the class's video score to every proposal score (WUM: 0.2).
        inner_includes_next: RSKP's off-by-one (inner mean and stored end include one snippet past the run).
        nms_threshold: overlap above which a lower-scored proposal is suppressed.
        nms_overlap: "iou" (true IoU) or "suppressed_length" (intersection / length of the lower-scored one).
        upsample: linear temporal upsampling factor of the CAS before thresholding (1 = snippet resolution).
    """

    thresholds: tuple[float, ...] = attrs.field(factory=_rskp_thresholds, converter=tuple)
    attention_thresholds: tuple[float, ...] = attrs.field(default=(), converter=tuple)
    class_threshold: float = attrs.field(default=0.1, validator=ge(0))
    fallback_argmax: bool = False
    min_length: int = attrs.field(default=2, validator=ge(1))
    inflation: float = attrs.field(default=0.25, validator=ge(0))
    outer_weight: float = attrs.field(default=1.0, validator=ge(0))
    video_score_weight: float = attrs.field(default=0.0, validator=ge(0))
    inner_includes_next: bool = True
    nms_threshold: float = attrs.field(default=0.5, validator=gt(0))
    nms_overlap: str = attrs.field(default="suppressed_length", validator=in_(("iou", "suppressed_length")))
    upsample: int = attrs.field(default=1, validator=ge(1))
