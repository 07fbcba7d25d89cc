"""Evaluation of WTAL results: detection mAP (ActivityNet, RSKP and W-TALC protocols) and classification mAP.

Never imports model code. See ``docs/evaluation.md`` for the protocols and where they differ.
"""

from ..formats.activitynet import class_taxonomy
from ._io import (
    EvaluationWarning,
    GroundTruth,
    Predictions,
    load_ambiguous,
    load_ground_truth,
    load_predictions,
    load_wtalc_ground_truth,
)
from .classification import classification_map
from .detection import (
    ACTIVITYNET_TIOU,
    PROTOCOLS,
    THUMOS_TIOU,
    DetectionResult,
    detection_map,
    evaluate_arrays,
    parse_tiou,
    result_table,
    tiou_array,
)
from .matching import segment_iou, snippet_iou

__all__ = [
    "ACTIVITYNET_TIOU",
    "PROTOCOLS",
    "THUMOS_TIOU",
    "DetectionResult",
    "EvaluationWarning",
    "GroundTruth",
    "Predictions",
    "class_taxonomy",
    "classification_map",
    "detection_map",
    "evaluate_arrays",
    "load_ambiguous",
    "load_ground_truth",
    "load_predictions",
    "load_wtalc_ground_truth",
    "parse_tiou",
    "result_table",
    "segment_iou",
    "snippet_iou",
    "tiou_array",
]
