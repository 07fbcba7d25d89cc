"""How a head's CAS becomes detections: the settings of :mod:`rskp_plugin.localization` and its building blocks in
:mod:`rskp_plugin.proposals`, in a module of their own so that both import it and neither imports the other.

Part of the head contract: head authors import it from :mod:`rskp_plugin.protocols` and declare their rules as a
value of it (the head's ``localization``; each built-in head keeps its own as ``LOCALIZATION`` in its file).
"""

from __future__ import annotations

import attrs
from attrs.validators import ge, gt, in_


def _rskp_thresholds() -> tuple[float, ...]:
    return tuple(round(0.001 + 0.002 * i, 6) for i in range(20))  # arange(0.001, 0.04, 0.002)


@attrs.frozen(kw_only=True)
class LocalizationSettings:
    """How a head's CAS becomes detections; defaults are the official RSKP code's (docs/heads.md 2.5).

    Attributes:
        thresholds: CAS thresholds; every threshold yields proposals, all are pooled before NMS.
        attention_thresholds: thresholds on the attention/actionness signal (WUM's magnitude proposals); the runs are
            the same for every class and are scored on that class's CAS.
        class_threshold: a class is localised in a video when its video score is at least this.
        fallback_argmax: if no class passes ``class_threshold``, localise the top-scoring class (WUM, DGAM).
        min_length: proposals shorter than this (in CAS positions, after upsampling) are dropped.
        inflation: outer flank length as a fraction of the proposal length (rho, 0.25).
        outer_weight: kappa in score = mean(inner) - kappa * mean(outer); 0 gives the plain mean score (STPN).
        video_score_weight: adds this times the class's video score to every proposal score (WUM: 0.2).
        inner_includes_next: RSKP's off-by-one (inner mean and stored end include one snippet past the run; the
            right flank starts one later and stops before the video's last snippet). False for WUM and STPN.
        nms_threshold: overlap above which a lower-scored proposal is suppressed.
        nms_overlap: "iou" (true IoU, suppress when >= threshold, WUM's ``utils.nms``) or "suppressed_length"
            (intersection / length of the lower-scored one, suppress when > threshold, RSKP's NMS).
        upsample: linear temporal upsampling factor of the CAS before thresholding (1 = snippet resolution); done
            like ``scipy.interpolate.interp1d(kind="linear", fill_value="extrapolate")`` at ``arange(0, T, 1/up)``.
        strict: a position is active when the signal is > threshold (RSKP, FAC-Net); False: >= threshold and > 0
            (WUM, which zeroes values below the threshold and then keeps the positive ones; STPN).
        zero_below_threshold: score a CAS-threshold proposal on the CAS with values below that threshold set to 0
            (WUM's ``cas_temp``); attention-threshold proposals are always scored on the untouched CAS.
        nms_inclusive: count lengths with +1 in NMS (``e - s + 1``), as both official codes do.
        nms_units: "positions" (RSKP: overlaps on CAS indices) or "seconds" (WUM: overlaps, with the +1, on times).
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
    strict: bool = True
    zero_below_threshold: bool = False
    nms_inclusive: bool = True
    nms_units: str = attrs.field(default="positions", validator=in_(("positions", "seconds")))
