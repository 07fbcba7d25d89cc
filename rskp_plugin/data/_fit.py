"""Fit the synthetic generator's annotation statistics to the real THUMOS14-reduced annotations.

Regenerate the constants in ``synthetic.py`` with::

    python -m rskp_plugin.data._fit ../shared/data/thumos14reduced-annotations

The annotation files are read where they are; nothing is copied into the project. ``annotation_statistics`` is
also what ``tests/test_synthetic.py`` compares between the real and the generated annotations.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ._npy import load_npy
from .wtalc import PICKLED_ANNOTATIONS

DUPLICATE_OF = {"CliffDiving": "Diving"}  # THUMOS14 quirk: every CliffDiving instance is also a Diving instance
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 21)


def read_real(annotation_dir: str | os.PathLike) -> dict:
    """Durations (N,), segments (list of (K, 2)), segment label names (list of lists), class names, subsets."""
    folder = Path(annotation_dir)

    def load(stem: str) -> np.ndarray:  # unpickles only the ragged files, as load_wtalc does
        return load_npy(folder / f"{stem}.npy", "W-TALC file", pickled=stem in PICKLED_ANNOTATIONS)

    def text(x: object) -> str:  # Python 2 pickles keep strings as bytes
        return x.decode("utf-8") if isinstance(x, bytes) else str(x)

    return {
        "durations": np.asarray(load("duration"), dtype=np.float64).reshape(-1),
        "segments": [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in load("segments")],
        "labels": [[text(x) for x in labels] for labels in load("labels")],
        "class_names": tuple(c.decode() for c in load("classlist")),
        "subsets": np.array([s.decode() for s in load("subset")]),
    }


def covered_fraction(segments: np.ndarray, duration: float) -> float:
    """Fraction of [0, duration] covered by the union of the segments."""
    if len(segments) == 0:
        return 0.0
    clipped = np.clip(segments[np.argsort(segments[:, 0])], 0.0, duration)
    ends = np.maximum.accumulate(clipped[:, 1])
    starts = np.maximum(clipped[:, 0], np.concatenate([[0.0], ends[:-1]]))
    return float(np.clip(ends - starts, 0, None).sum() / duration)


def annotation_statistics(
    durations: Sequence[float],
    segments: Sequence[np.ndarray],
    labels: Sequence[Sequence[str]],
    class_names: Sequence[str],
) -> dict:
    """Summary statistics of a set of annotated videos (the figures the generator is fitted to and tested on).

    Args:
        durations: N durations in seconds.
        segments: N arrays (K_i, 2) of instance bounds in seconds.
        labels: N lists of K_i class names.
        class_names: the C classes.

    Returns:
        A dict of floats and arrays (see the keys).
    """
    durations = np.asarray(durations, dtype=np.float64)
    counts = np.array([len(s) for s in segments])
    lengths = np.concatenate([s[:, 1] - s[:, 0] for s in segments])
    num_classes = np.array([len(set(lab)) for lab in labels])
    flat = [x for lab in labels for x in lab]
    share = np.array([flat.count(c) for c in class_names], dtype=np.float64) / max(len(flat), 1)
    video_share = np.array([sum(c in set(lab) for lab in labels) for c in class_names], dtype=np.float64)
    dup_total = dup_found = 0
    for segs, labs in zip(segments, labels):
        labs = np.asarray(labs)
        for name, base in DUPLICATE_OF.items():
            bounds = {tuple(b) for b in segs[labs == base].tolist()}
            for b in segs[labs == name].tolist():
                dup_total += 1
                dup_found += tuple(b) in bounds
    return {
        "videos": len(durations),
        "duration_p10": float(np.percentile(durations, 10)),
        "duration_median": float(np.median(durations)),
        "duration_p90": float(np.percentile(durations, 90)),
        "instances_median": float(np.median(counts)),
        "instances_mean": float(counts.mean()),
        "instances_count_corr": float(np.corrcoef(np.log(durations), np.log(np.maximum(counts, 1)))[0, 1]),
        "length_p25": float(np.percentile(lengths, 25)),
        "length_median": float(np.median(lengths)),
        "length_p75": float(np.percentile(lengths, 75)),
        "classes_per_video": np.array([np.mean(num_classes == k) for k in (1, 2, 3)]),
        "coverage_median": float(np.median([covered_fraction(s, d) for s, d in zip(segments, durations)])),
        "class_share": share,
        "video_class_share": video_share / len(durations),
        "duplicate_fraction": dup_found / dup_total if dup_total else float("nan"),
        "duplicates": dup_total,
    }


def fit(annotation_dir: str | os.PathLike) -> dict:
    """Fit the generator's figures to both subsets of the real annotations (412 videos pooled)."""
    real = read_real(annotation_dir)
    classes = real["class_names"]
    durations = real["durations"]
    # Class sets (video-level, from the temporal labels) and their counts.
    sets = collections.Counter(tuple(sorted(set(lab))) for lab in real["labels"])
    # Unique instances: CliffDiving duplicates of Diving are generated by copying, not drawn.
    unique_counts, unique_lengths = [], []
    for segs, labs in zip(real["segments"], real["labels"]):
        keep = [lab not in DUPLICATE_OF for lab in labs]
        unique_counts.append(max(int(np.sum(keep)), 1))
        unique_lengths.append([(lab, e - s) for (s, e), lab, k in zip(segs.tolist(), labs, keep) if k])
    log_d, log_k = np.log(durations), np.log(np.asarray(unique_counts, dtype=np.float64))
    set_keys = [tuple(sorted(set(lab))) for lab in real["labels"]]
    # Some classes come in longer videos (athletics): a per-class-set shift of log duration ('rare': sets seen in
    # fewer than 5 videos), and the quantiles of what remains.
    duration_offsets = {}
    for key, n in sets.items():
        members = [k == key for k in set_keys] if n >= 5 else [sets[k] < 5 for k in set_keys]
        duration_offsets[key if n >= 5 else "rare"] = float(np.mean(log_d[members]) - np.mean(log_d))
    log_d_residual = log_d - np.array([duration_offsets.get(k, duration_offsets["rare"]) for k in set_keys])
    slope, intercept = np.polyfit(log_d, log_k, 1)
    residual = log_k - (intercept + slope * log_d)
    log_offsets = {key: float(np.mean(residual[[k == key for k in set_keys]])) for key, n in sets.items() if n >= 5}
    centred = residual - np.array([log_offsets.get(k, 0.0) for k in set_keys])
    spread = float(np.std(centred))
    # Offsets matched in the mean (not the log-mean), so that per-class instance totals come out right; class sets
    # seen in fewer than 5 videos share one offset.
    trend = np.exp(intercept + slope * log_d + spread**2 / 2)
    counts = np.asarray(unique_counts, dtype=np.float64)
    offsets = {}
    for key, n in sets.items():
        members = [k == key for k in set_keys] if n >= 5 else [sets[k] < 5 for k in set_keys]
        offsets[key if n >= 5 else "rare"] = float(np.log(counts[members].sum() / trend[members].sum()))
    # Instance lengths: log-normal per class with a per-(video, class) random effect.
    per_class = collections.defaultdict(list)
    groups = collections.defaultdict(list)
    for v, items in enumerate(unique_lengths):
        for lab, length in items:
            per_class[lab].append(np.log(max(length, 0.1)))
            groups[(v, lab)].append(np.log(max(length, 0.1)))
    # Class means over (video, class) groups, not over instances: instance weighting is then reproduced by the
    # count-length correlation below.
    group_means = collections.defaultdict(list)
    for (v, lab), x in groups.items():
        group_means[lab].append(np.mean(x))
    mu = {c: float(np.mean(group_means[c])) for c in group_means}
    between = np.array([np.mean(x) - mu[lab] for (v, lab), x in groups.items()])
    # Videos with more instances than expected have shorter ones: correlation of the count residual and the
    # per-(video, class) length effect.
    count_z = np.array([centred[v] for (v, lab) in groups])
    length_count_corr = float(np.corrcoef(count_z, between)[0, 1])
    within = np.concatenate([np.asarray(x) - np.mean(x) for x in groups.values()])
    return {
        "classes": classes,
        "log_duration_quantiles": np.quantile(log_d_residual, QUANTILE_LEVELS),
        "duration_offsets": duration_offsets,
        "class_sets": sorted(sets.items(), key=lambda kv: (-kv[1], kv[0])),
        "count_intercept": float(intercept),
        "count_slope": float(slope),
        "count_offsets": offsets,
        "count_spread": spread,
        "length_log_mean": [round(mu.get(c, float(np.mean(list(mu.values())))), 3) for c in classes],
        "length_between_sd": float(np.std(between)),
        "length_count_corr": length_count_corr,
        "length_within_sd": float(np.std(within)),
        "length_min": float(min(min(e - s for s, e in segs.tolist()) for segs in real["segments"] if len(segs))),
    }


def _wrap(items: list[str], per_line: int = 10) -> list[str]:
    return ["    " + ", ".join(items[i : i + per_line]) + "," for i in range(0, len(items), per_line)]


def render(figures: dict) -> str:
    """Python source of the constants for ``synthetic.py``."""
    lines = ["# Fitted by: python -m rskp_plugin.data._fit ../shared/data/thumos14reduced-annotations"]
    lines.append("LOG_DURATION_QUANTILES = (  # log seconds minus the class set's shift, at 0, 5, ..., 100 %")
    lines += _wrap([f"{x:.4f}" for x in figures["log_duration_quantiles"]])
    lines.append(")")
    lines.append("DURATION_OFFSETS = {  # log-duration shift of class sets with >= 5 real videos; 'rare': the others")
    for key, off in sorted(figures["duration_offsets"].items(), key=lambda kv: str(kv[0])):
        lines.append(f"    {key!r}: {off:.4f},")
    lines.append("}")
    lines.append("CLASS_SETS = (  # (classes of a video, number of real videos)")
    for key, n in figures["class_sets"]:
        lines.append(f"    ({key!r}, {n}),")
    lines.append(")")
    lines.append(f"COUNT_INTERCEPT, COUNT_SLOPE = {figures['count_intercept']:.4f}, {figures['count_slope']:.4f}")
    lines.append(f"COUNT_SPREAD = {figures['count_spread']:.4f}  # sd of log(instances) around the fit")
    lines.append("COUNT_OFFSETS = {  # log-count offset of class sets with >= 5 real videos; 'rare': the others")
    for key, off in sorted(figures["count_offsets"].items(), key=lambda kv: str(kv[0])):
        lines.append(f"    {key!r}: {off:.4f},")
    lines.append("}")
    lines.append("LENGTH_LOG_MEAN = (  # log seconds, per class (classlist order), mean over (video, class) groups")
    lines += _wrap([f"{x:.3f}" for x in figures["length_log_mean"]])
    lines.append(")")
    lines.append(
        f"LENGTH_BETWEEN_SD, LENGTH_WITHIN_SD = {figures['length_between_sd']:.4f}, {figures['length_within_sd']:.4f}"
    )
    lines.append(f"LENGTH_COUNT_CORR = {figures['length_count_corr']:.4f}  # count residual vs length effect")
    lines.append(f"LENGTH_MIN = {figures['length_min']:.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations", help="folder with the W-TALC THUMOS14-reduced annotation .npy files")
    args = parser.parse_args(argv)
    print(render(fit(args.annotations)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
