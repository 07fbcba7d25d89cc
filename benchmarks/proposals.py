"""Proposal generation time for the THUMOS14 test split: ``localize`` vs the loop of the official generators.

Run:  python benchmarks/proposals.py                   (212 videos, 20 classes, RSKP rules: 20 thresholds)
      python benchmarks/proposals.py --head wum        (WUM rules: 10 CAS + 9 attention thresholds, x24 upsampling)

Lengths: the 212 THUMOS14 test videos of the W-TALC annotations, duration x 25/16 snippets, when ../shared/data
(or --data) exists; else a fixed set of 212 lengths drawn from a log-normal fitted to them (median 253, 23..2615).
CAS: smooth synthetic activations with bumps on the video's GT instances (real GT when available), values on the
head's scale (RSKP: attention-weighted softmax, about 0..0.1; WUM: min-max normalised, 0..1). Two regimes: the
realistic one (the video's GT classes score 0.5-0.9, the rest below the class threshold), and the worst case
where all 20 classes pass it. Times are the best of --repeats runs of the whole split; the loop reference
(rskp_plugin/reference/localization.py, one run / class / threshold at a time) runs once on the realistic regime, and
the detections are checked to be equal.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from _timing import best_time  # beside this script (its folder is on sys.path when run)

from rskp_heads import facnet, stpn, wum
from rskp_plugin.localization import localize, localize_video
from rskp_plugin.protocols import LocalizationSettings
from rskp_plugin.reference.localization import ref_localize

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14reduced-annotations"
FPS = 25 / 16


def videos(data: Path, rng: np.random.Generator) -> tuple[list[int], list[list[tuple[float, float, int]]], str]:
    """Snippet counts and GT instances (start s, end s, class) of the 212 test videos."""
    if (data / "duration.npy").is_file():
        subset = np.load(data / "subset.npy")
        duration = np.load(data / "duration.npy")[:, 0]
        segments, labels = np.load(data / "segments.npy", allow_pickle=True), np.load(data / "labels.npy",
                                                                                      allow_pickle=True)
        classes = [c.decode() for c in np.load(data / "classlist.npy")]
        keep = [i for i in range(len(subset)) if subset[i] == b"test" and len(segments[i])]
        lengths = [max(2, int(duration[i] * FPS)) for i in keep]
        gts = [[(s, e, classes.index(lab)) for (s, e), lab in zip(segments[i], labels[i])] for i in keep]
        return lengths, gts, f"real THUMOS14 test lengths ({data})"
    lengths = np.clip(np.exp(rng.normal(np.log(253), 0.9, size=212)), 23, 2615).astype(int).tolist()
    gts = []
    for n in lengths:
        cls = rng.choice(20, size=int(rng.integers(1, 3)), replace=False)
        starts = rng.uniform(0, n / FPS, size=int(rng.integers(1, 30)))
        gts.append([(s, s + float(rng.lognormal(1.1, 0.7)), int(rng.choice(cls))) for s in starts])
    return lengths, gts, "synthetic lengths (log-normal, THUMOS14-like)"


def make_inputs(lengths, gts, head: str, all_classes: bool, rng: np.random.Generator):
    scale = 0.08 if head in ("rskp", "facnet") else 1.0
    scores, cas, att = [], [], []
    for n, gt in zip(lengths, gts):
        t = np.arange(n)[:, None]
        noise = np.cumsum(np.vstack([np.zeros((1, 20)), rng.uniform(0, 0.05, size=(n + 4, 20))]), axis=0)
        c = (noise[5:] - noise[:-5]) / 5  # background: noise smoothed over 5 snippets (no single-snippet flicker)
        for s, e, k in gt:
            mid, half = (s + e) / 2 * FPS, max((e - s) / 2 * FPS, 0.5)
            c[:, k] += np.exp(-0.5 * ((t[:, 0] - mid) / half) ** 4)  # flat-topped bump on the instance
        cas.append(np.clip(c, 0, 1) * scale)
        p = rng.uniform(0.5, 0.9, size=20) if all_classes else rng.uniform(0, 0.09, size=20)
        p[[k for _, _, k in gt]] = rng.uniform(0.5, 0.9)
        scores.append(p)
        att.append(np.clip(c.max(axis=1), 0, 1))
    return scores, cas, att


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--head", default="rskp", choices=("rskp", "facnet", "wum", "stpn"), help="localisation rules")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of localize (best is reported)")
    parser.add_argument("--no-loop", action="store_true", help="skip the (slow) loop reference")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="W-TALC annotation folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    lengths, gts, source = videos(args.data, rng)
    settings = {"rskp": LocalizationSettings(), "facnet": facnet.OFFICIAL_LOCALIZATION, "wum": wum.LOCALIZATION,
                "stpn": stpn.LOCALIZATION}[args.head]
    names, class_names = [f"video_{i}" for i in range(len(lengths))], [f"class_{c}" for c in range(20)]
    table = Table(title=f"Proposal generation, {len(lengths)} videos ({sum(lengths)} snippets), 20 classes, "
                        f"{args.head} rules ({len(settings.thresholds)} + {len(settings.attention_thresholds)} "
                        f"thresholds, upsample x{settings.upsample}); {source}")
    for col in ("regime", "implementation", "best time (s)", "detections", "speed-up / check"):
        table.add_column(col)
    ok = True
    for regime, all_classes in (("realistic classes", False), ("all 20 classes pass", True)):
        scores, cas, att = make_inputs(lengths, gts, args.head, all_classes, rng)
        attention = att if settings.attention_thresholds else None
        t_fast, out = best_time(lambda: localize(names, scores, cas, attention, settings, class_names), args.repeats)
        count = sum(len(v) for v in out["results"].values())
        table.add_row(regime, "localize", f"{t_fast:.3f}", str(count), "")
        if args.no_loop or all_classes:
            continue
        start = time.perf_counter()
        ref = [ref_localize(p, c, a, settings, FPS) for p, c, a in zip(scores, cas, att)]
        t_loop = time.perf_counter() - start
        same = all(
            len(r) == len(d.labels) and all(abs(x[3] - y) < 1e-9 for x, y in zip(r, d.scores))
            for r, d in zip(ref, (localize_video(p, c, a, settings) for p, c, a in zip(scores, cas, att)))
        )
        ok &= same
        table.add_row(regime, "loop reference", f"{t_loop:.3f}", str(sum(len(r) for r in ref)),
                      f"{t_loop / t_fast:.0f}x, {'identical' if same else 'DIFFERENT'}")
    Console(width=160).print(table)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
