"""Straightforward loop implementation of the official proposal generators (test and benchmark reference).

One run, one class and one threshold at a time, as RSKP's ``getActLoc`` and WUM's ``get_proposal_oic`` / ``nms``
are written (docs/heads.md 2.5, 5.4); kept independent of ``rskp_plugin.localization`` on purpose.
"""

from __future__ import annotations

import math

import numpy as np


def _ref_upsample(a: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return a
    out = []
    for x in np.arange(0, len(a), 1 / scale):
        i = min(int(math.floor(x)), len(a) - 2)
        out.append(a[i] + (a[i + 1] - a[i]) * (x - i))
    return np.array(out)


def _ref_runs(active):
    runs, start = [], None
    for t, on in enumerate(list(active) + [False]):
        if on and start is None:
            start = t
        if not on and start is not None:
            runs.append((start, t))
            start = None
    return runs


def _ref_proposal(sig, s, e, st):
    """RSKP getActLoc (inner_includes_next) or WUM get_proposal_oic, one run at a time."""
    T, L, rho = len(sig), e - s, st.inflation
    if st.inner_includes_next:
        inner = np.mean(sig[s:e + 1])
        outer_s = max(0, int(s - rho * L))
        outer_e = min(T - 1, int(e + rho * L + 1))
        outer = list(range(outer_s, s)) + list(range(e + 1, outer_e))
    else:
        inner = np.mean(sig[s:e])
        outer_s = max(0, int(s - rho * L))
        outer_e = min(T - 1, int(e - 1 + rho * L))
        outer = list(range(outer_s, s)) + list(range(e, outer_e + 1))
    outer_score = np.mean(sig[outer]) if outer else 0.0
    return inner - st.outer_weight * outer_score


def _ref_nms(props, st):
    props = np.array(props, dtype=np.float64).reshape(-1, 3)
    s, e, sc = props[:, 0], props[:, 1], props[:, 2]
    area = e - s + 1
    order = list(np.argsort(sc)[::-1])
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            inter = max(0.0, min(e[i], e[j]) - max(s[i], s[j]) + 1)
            if st.nms_overlap == "iou":
                if inter / (area[i] + area[j] - inter) < st.nms_threshold:
                    rest.append(j)
            elif inter / area[j] <= st.nms_threshold:
                rest.append(j)
        order = rest
    return keep


def ref_localize(p, cas, att, st, f, score_cas=None):
    classes = [c for c in range(len(p)) if p[c] >= st.class_threshold]
    if not classes and st.fallback_argmax:
        classes = [int(np.argmax(p))]
    scoring = cas if score_cas is None else score_cas
    per_second = f * st.upsample
    out = []
    for c in classes:
        sig = _ref_upsample(cas[:, c], st.upsample)
        sco = _ref_upsample(scoring[:, c], st.upsample)
        props = []
        families = [(thr, sig, True) for thr in st.thresholds]
        if st.attention_thresholds:
            a = _ref_upsample(att, st.upsample)
            families += [(thr, a, False) for thr in st.attention_thresholds]
        for thr, signal, is_cas in families:
            active = signal > thr if st.strict else (signal >= thr) & (signal > 0)
            used = np.where(sig < thr, 0.0, sco) if (is_cas and st.zero_below_threshold) else sco
            for s, e in _ref_runs(active):
                if e - s >= st.min_length:
                    end = e + 1 if st.inner_includes_next else e
                    props.append((s, end, _ref_proposal(used, s, e, st) + st.video_score_weight * p[c]))
        if not props:
            continue
        coords = [(s / per_second, e / per_second, sc) for s, e, sc in props] if st.nms_units == "seconds" else props
        for i in _ref_nms(coords, st):
            s, e, sc = props[i]
            out.append((c, s / per_second, e / per_second, sc))
    return out


def smooth_cas(rng, T, C, *, peaky=True):
    """Smooth, realistic-looking CAS in [0, 1] (random bumps), so runs are not single-snippet noise."""
    t = np.arange(T)[:, None]
    cas = np.zeros((T, C))
    for c in range(C):
        for _ in range(rng.integers(1, 6)):
            mu, width, height = rng.uniform(0, T), rng.uniform(1, 8), rng.uniform(0.01, 0.2 if peaky else 1)
            cas[:, c] += height * np.exp(-0.5 * ((t[:, 0] - mu) / width) ** 2)
    return np.clip(cas + rng.uniform(0, 0.01, size=(T, C)), 0, 1)
