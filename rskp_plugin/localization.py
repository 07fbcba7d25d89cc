"""TCAM -> proposals -> scores -> NMS -> detections. Never imports model code.

One routine covers the localisation rules of every shipped head (docs/heads.md 2.5, 3.3, 5.4, 6); a head differs only in
its :class:`LocalizationSettings`, which the head declares (its ``localization``). Everything is vectorised over thresholds, snippets and
classes: binarise a (K, C, T) tensor, find run starts/ends with ``diff``, take inner/outer means from cumulative sums.
NMS is greedy per (video, class) with vectorised overlaps; its Python loop runs only over the kept proposals.

Index conventions (run = maximal set of active positions ``s .. e-1``, ``e`` exclusive, length ``L = e - s``):

* inner mean over ``[s, e + o)`` clipped to the video, with ``o = 1`` when ``inner_includes_next`` (RSKP/FAC-Net:
  one position past the run) else ``o = 0`` (WUM, STPN);
* left flank ``[max(0, floor(s - rho * L)), s)``;
* right flank ``[e + o, min(T - o, floor(e + rho * L + o)))`` -- for ``o = 1`` this is RSKP's
  ``range(e + 1, min(T - 1, int(e + 0.25 L + 1)))`` (the last position of the video never enters a flank), for
  ``o = 0`` WUM's inclusive ``[e, min(T - 1, int(e - 1 + 0.25 L))]``;
* score = inner - kappa * outer + gamma * video_score[c] (outer = 0 if both flanks are empty);
* stored segment ``[s, e + o)`` positions, converted to seconds by ``/ (snippets_per_second * upsample)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from .errors import ConfigError, ShapeError
from .localization_settings import LocalizationSettings
from .proposals import cumsum0, find_runs, grouped_nms, oic_scores, upsample_linear


class Detections(NamedTuple):
    """Detections of one video, ordered by class, then by NMS pick order (descending score).

    Attributes:
        labels: (K,) int class indices.
        starts: (K,) float seconds.
        ends: (K,) float seconds.
        scores: (K,) float.
    """

    labels: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    scores: np.ndarray


def _to_numpy(x: Any, name: str, ndim: int) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise ShapeError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ShapeError(f"{name} holds {int((~np.isfinite(arr)).sum())} NaN/Inf values; check the model outputs")
    return arr


def localize_video(
    video_scores: Any,
    cas: Any,
    attention: Any,
    settings: LocalizationSettings,
    *,
    snippets_per_second: float = 25 / 16,
    num_snippets: int | None = None,
    score_cas: Any = None,
) -> Detections:
    """Detections of one video from its video scores and CAS (proposals, OIC scores, per-class NMS).

    Args:
        video_scores: (C,) video-level class scores (numpy array or tensor).
        cas: (T, C) class activation sequence that is thresholded.
        attention: (T,) attention/actionness (thresholded with ``settings.attention_thresholds``) or None.
        settings: the head's localisation rules.
        snippets_per_second: snippets per second of ``cas`` before upsampling (25/16 for W-TALC I3D features;
            WUM: ``25 * T / (16 * L)`` for a video of L snippets resampled to T).
        num_snippets: the valid length if ``cas`` is padded (the rest is ignored).
        score_cas: (T, C) signal the proposals are scored on, if not ``cas`` (STPN's weighted T-CAM).

    Returns:
        Detections ordered by class, then NMS pick order.
    """
    p = _to_numpy(video_scores, "video_scores", 1)
    signal = _to_numpy(cas, "cas", 2)
    n_classes = p.shape[0]
    if signal.shape[1] != n_classes:
        raise ShapeError(f"cas must have shape (T, C) with C={n_classes} (video_scores), got {signal.shape}")
    scoring = signal if score_cas is None else _to_numpy(score_cas, "score_cas", 2)
    if scoring.shape != signal.shape:
        raise ShapeError(f"score_cas must have the shape of cas {signal.shape}, got {scoring.shape}")
    att = None
    if settings.attention_thresholds:
        if attention is None:
            raise ShapeError("settings.attention_thresholds are set but attention is None; pass the (T,) attention")
        att = _to_numpy(attention, "attention", 1)
        if att.shape[0] != signal.shape[0]:
            raise ShapeError(f"attention must have shape (T,) with T={signal.shape[0]}, got {att.shape}")
    if num_snippets is not None:
        if not 0 <= num_snippets <= signal.shape[0]:
            raise ShapeError(f"num_snippets={num_snippets} is outside the CAS length {signal.shape[0]}")
        signal, scoring = signal[:num_snippets], scoring[:num_snippets]
        att = None if att is None else att[:num_snippets]
    if not settings.thresholds and not settings.attention_thresholds:
        raise ConfigError("LocalizationSettings needs at least one threshold (thresholds or attention_thresholds)")
    empty = Detections(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))

    classes = np.flatnonzero(p >= settings.class_threshold)
    if classes.size == 0 and settings.fallback_argmax:
        classes = np.array([int(np.argmax(p))])
    if classes.size == 0 or signal.shape[0] == 0:
        return empty
    sig = upsample_linear(signal[:, classes], settings.upsample).T  # (C', T') thresholded signal
    sco = sig if score_cas is None else upsample_linear(scoring[:, classes], settings.upsample).T  # (C', T')
    length = sig.shape[1]

    parts = []  # (class slot, threshold slot, start, end, score) per proposal family
    if settings.thresholds:
        thr = np.asarray(settings.thresholds)[None, :, None]  # (1, K, 1)
        active = sig[:, None, :] > thr if settings.strict else (sig[:, None, :] >= thr) & (sig[:, None, :] > 0)
        c, k, s, e = find_runs(active)  # (C', K, T') -> runs
        ok = e - s >= settings.min_length
        c, k, s, e = c[ok], k[ok], s[ok], e[ok]
        if settings.zero_below_threshold:
            zeroed = np.where(sig[:, None, :] < thr, 0.0, sco[:, None, :])  # (C', K, T') WUM's cas_temp
            csum = cumsum0(zeroed).reshape(-1, length + 1)
            row = c * thr.shape[1] + k  # row of the (C' * K, T'+1) cumulative sums
        else:
            csum, row = cumsum0(sco), c
        parts.append((c, k, s, e, oic_scores(csum, row, s, e, length, settings)))
    if att is not None:
        att_up = upsample_linear(att, settings.upsample)  # (T',)
        thr = np.asarray(settings.attention_thresholds)[:, None]  # (K2, 1)
        active = att_up[None, :] > thr if settings.strict else (att_up[None, :] >= thr) & (att_up[None, :] > 0)
        active = np.broadcast_to(active[None], (len(classes),) + active.shape)  # same runs for every class
        c, k, s, e = find_runs(active)
        ok = e - s >= settings.min_length
        c, k, s, e = c[ok], k[ok] + len(settings.thresholds), s[ok], e[ok]
        parts.append((c, k, s, e, oic_scores(cumsum0(sco), c, s, e, length, settings)))

    c, k, s, e, score = (np.concatenate(x) for x in zip(*parts))
    order = np.lexsort((s, k, c))  # official order: class, then threshold (CAS before attention), then time
    c, s, e, score = c[order], s[order], e[order], score[order]
    score = score + settings.video_score_weight * p[classes][c]
    end = e + (1 if settings.inner_includes_next else 0)
    per_second = snippets_per_second * settings.upsample
    t_start, t_end = s / per_second, end / per_second

    bounds = np.searchsorted(c, np.arange(len(classes) + 1))  # proposals of class slot j: bounds[j]:bounds[j+1]
    if settings.nms_units == "seconds":
        a, b = t_start, t_end
    else:
        a, b = s.astype(np.float64), end.astype(np.float64)
    idx = grouped_nms(a, b, score, bounds, threshold=settings.nms_threshold, overlap=settings.nms_overlap,
                      inclusive=settings.nms_inclusive)  # per-class NMS, all classes at once
    if idx.size == 0:
        return empty
    return Detections(classes[c[idx]].astype(np.int64), t_start[idx], t_end[idx], score[idx])


def localize(
    names: Sequence[str],
    video_scores: Sequence[Any],
    cas: Sequence[Any],
    attention: Sequence[Any] | None,
    settings: LocalizationSettings,
    class_names: Sequence[str],
    *,
    snippets_per_second: float | Sequence[float] = 25 / 16,
    score_cas: Sequence[Any] | None = None,
    num_snippets: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Detections of many videos as an ActivityNet results object (docs/evaluation.md 3.1).

    Args:
        names: video ids.
        video_scores: per video (C,) scores, aligned with ``names``.
        cas: per video (T_i, C) CAS.
        attention: per video (T_i,) attention, or None for all videos.
        settings: the head's localisation rules.
        class_names: C class names, in the column order of the CAS.
        snippets_per_second: one factor for all videos or one per video.
        score_cas: per video scoring signal, if it differs from the CAS (STPN).
        num_snippets: per video valid lengths, if the CAS are padded.

    Returns:
        ``{"version", "external_data", "results": {video: [{"label", "score", "segment": [start, end]}]}}``; per
        video, detections are ordered by class, then score (so a class's list over the file is RSKP's order).
    """
    n = len(names)
    for what, seq in (("video_scores", video_scores), ("cas", cas), ("attention", attention),
                      ("score_cas", score_cas), ("num_snippets", num_snippets)):
        if seq is not None and len(seq) != n:
            raise ShapeError(f"{what} has {len(seq)} entries but there are {n} video names; align them")
    factors = np.broadcast_to(np.asarray(snippets_per_second, dtype=np.float64), (n,))
    results: dict[str, list[dict[str, Any]]] = {}
    for i, name in enumerate(names):  # one video at a time; everything inside is vectorised
        n_cls = np.shape(video_scores[i])[-1] if np.ndim(video_scores[i]) else 0
        if len(class_names) != n_cls:
            raise ShapeError(f"video {name!r}: {n_cls} class scores but {len(class_names)} class names; align them")
        try:
            det = localize_video(
                video_scores[i], cas[i], None if attention is None else attention[i], settings,
                snippets_per_second=float(factors[i]), num_snippets=None if num_snippets is None else num_snippets[i],
                score_cas=None if score_cas is None else score_cas[i],
            )
        except ShapeError as exc:
            raise ShapeError(f"video {name!r}: {exc}") from exc
        results[str(name)] = [
            {"label": class_names[lab], "score": sc, "segment": [st, en]}
            for lab, sc, st, en in zip(det.labels.tolist(), det.scores.tolist(), det.starts.tolist(),
                                       det.ends.tolist())
        ]
    return {"version": "VERSION 1.3", "external_data": {"used": False, "details": ""}, "results": results}
