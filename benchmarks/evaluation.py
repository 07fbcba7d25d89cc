"""Detection-mAP time: the vectorised ``detection_map`` vs the official ActivityNet evaluator and the straightforward
per-prediction loop.

Run:  python benchmarks/evaluation.py                 (20,000 predictions, 212 videos, 20 classes, 7 thresholds)
      python benchmarks/evaluation.py --predictions 6302 --official-repeats 1
      python benchmarks/evaluation.py --predictions 5000 --ties 10

Ground truth: the 212 THUMOS14 test videos of the W-TALC annotations when ../shared/data (or --data) exists,
else 212 synthetic videos with the same number of classes and a similar instance count. Predictions: noisy copies
of GT instances (half of them, with wrong labels now and then) and false positives anywhere, with uniform random
scores (``--ties k`` quantises scores to k levels, so ties are plentiful). Both implementations score the same
objects (as ``json.load`` returns them; parsing the files is not timed) in one process; the loop is the
ActivityNet code's structure (per class, per prediction, per threshold, per GT in descending tIoU) in plain
numpy/Python, kept in rskp_plugin/reference/evaluation.py. The table gives the best time of each (20 and 3 runs,
interleaved: the machine is shared) and the largest difference of their per-class APs.

The official evaluator (``ANETdetection`` of github.com/activitynet/ActivityNet, ported to Python 3 in
``_official_activitynet.py``) is timed too where pandas and joblib are importable (they are not dependencies of
rskp: use a separate environment). It is timed from the same objects (its DataFrames built, then ``evaluate``), with
``--official-jobs`` joblib processes (1: the classes one after another in this process; the original starts one
process per class).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from _timing import best_time  # beside this script (its folder is on sys.path when run)

from rskp_plugin.evaluation import THUMOS_TIOU, detection_map, load_wtalc_ground_truth
from rskp_plugin.reference.evaluation import activitynet_ap

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14reduced-annotations"


def ground_truth(data: Path, rng: np.random.Generator) -> tuple[dict, str]:
    if (data / "segments.npy").is_file():
        return load_wtalc_ground_truth(data, "test"), f"THUMOS14 test GT ({data})"
    classes = [f"class_{c:02d}" for c in range(20)]
    database = {}
    for v in range(212):
        duration = float(rng.uniform(15, 600))
        labels = rng.choice(classes, size=int(rng.integers(1, 3)), replace=False)
        anns = []
        for _ in range(int(rng.integers(1, 30))):
            s = float(rng.uniform(0, duration - 1))
            anns.append({"segment": [s, min(duration, s + float(rng.lognormal(1.1, 0.8)))],
                         "label": str(rng.choice(labels))})
        database[f"video_{v:04d}"] = {"subset": "test", "annotations": anns}
    return {"database": database}, "synthetic GT (212 videos, 20 classes)"


def predictions(gt: dict, count: int, ties: int | None, rng: np.random.Generator) -> dict:
    flat = [(v, a) for v, r in gt["database"].items() for a in r["annotations"]]
    classes = sorted({a["label"] for _, a in flat})
    videos = list(gt["database"])
    results: dict[str, list] = {v: [] for v in videos}
    for i in range(count):
        if i % 2 == 0:
            v, a = flat[int(rng.integers(len(flat)))]
            s, e = (float(x) for x in a["segment"])
            length = max(e - s, 0.5)
            s, e = s + rng.normal(0, 0.2 * length), e + rng.normal(0, 0.2 * length)
            label = a["label"] if rng.random() < 0.9 else classes[int(rng.integers(len(classes)))]
        else:
            v = videos[int(rng.integers(len(videos)))]
            s = float(rng.uniform(0, 300))
            e, label = s + float(rng.lognormal(1.1, 0.8)), classes[int(rng.integers(len(classes)))]
        score = float(rng.integers(ties)) / ties if ties else float(rng.random())
        results[v].append({"label": label, "score": score, "segment": [float(s), float(max(s, e))]})
    return {"version": "VERSION 1.3", "external_data": {"used": False, "details": ""}, "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=int, default=20_000, help="number of predictions")
    parser.add_argument("--ties", type=int, default=None, help="quantise scores to this many levels")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs of the vectorised version (best)")
    parser.add_argument("--loop-repeats", type=int, default=3, help="timed runs of the loop (best)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="W-TALC annotation folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--official-repeats", type=int, default=1,
                        help="timed runs of the official evaluator (best; 0: leave it out)")
    parser.add_argument("--official-jobs", type=int, default=1,
                        help="joblib processes of the official evaluator (its own choice: one per class)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    gt, source = ground_truth(args.data, rng)
    pred = predictions(gt, args.predictions, args.ties, rng)
    gt, pred = json.loads(json.dumps(gt)), json.loads(json.dumps(pred))  # laid out in memory as json.load does
    thr = THUMOS_TIOU
    detection_map(gt, pred, thr)  # warm-up
    fast_times, rskp_times, loop_times = [], [], []
    for round_ in range(args.loop_repeats):  # interleaved, so that both see the same load on a shared machine
        for _ in range(max(1, args.repeats // args.loop_repeats)):
            t, fast = best_time(lambda: detection_map(gt, pred, thr), 1)
            fast_times.append(t)
            rskp_times.append(best_time(lambda: detection_map(gt, pred, thr, protocol="rskp"), 1)[0])
        t, (ref, classes) = best_time(lambda: activitynet_ap(gt, pred, thr), 1)
        loop_times.append(t)
    t_fast, t_rskp, t_loop = min(fast_times), min(rskp_times), min(loop_times)
    ap = fast.per_class_ap[:, [fast.class_names.index(c) for c in classes]]
    diff = float(np.abs(ap - ref).max())

    official = None
    if args.official_repeats > 0:
        try:
            from _official_activitynet import ANETdetection
        except ImportError as exc:  # pandas/joblib missing
            print(f"official evaluator left out ({exc})")
        else:
            import pandas

            subset = next(iter(gt["database"].values()))["subset"]
            runs = []
            for _ in range(args.official_repeats):
                def run_official():
                    evaluator = ANETdetection(gt, pred, thr, subset=subset, n_jobs=args.official_jobs)
                    evaluator.evaluate()
                    return evaluator

                runs.append(best_time(run_official, 1))
            t_off, evaluator = min(runs, key=lambda r: r[0])
            order = [fast.class_names.index(c) for c in evaluator.activity_index]
            off_diff = float(np.abs(fast.per_class_ap[:, order] - evaluator.ap).max())
            official = (t_off, evaluator.average_mAP, off_diff, pandas.__version__)

    n_videos = len(gt["database"])
    table = Table(title=f"Detection mAP, {args.predictions} predictions, {n_videos} videos, {len(classes)} classes, "
                        f"{len(thr)} thresholds; {source}")
    for col in ("implementation", "best time (s)", "speed-up", "average mAP", "max |AP diff| vs loop"):
        table.add_column(col, justify="right" if col != "implementation" else "left")
    if official is not None:
        t_off, off_avg, off_diff, pd_version = official
        table.add_column("vs official", justify="right")
        table.add_row(f"official ANETdetection (pandas {pd_version}, {args.official_jobs} job(s))", f"{t_off:.3f}",
                      "", f"{off_avg:.6f}", "", "1x")
    extra: tuple[list[str], ...] = ([], [], [])
    if official:
        extra = ([f"{t_off / t_loop:.1f}x"], [f"{t_off / t_fast:.0f}x (AP diff {off_diff:.1e})"],
                 [f"{t_off / t_rskp:.0f}x"])
    table.add_row("per-prediction loop (ActivityNet structure)", f"{t_loop:.3f}", "1.0x",
                  f"{ref.mean(axis=1).mean():.6f}", "", *extra[0])
    table.add_row("detection_map (activitynet)", f"{t_fast:.4f}", f"{t_loop / t_fast:.1f}x", f"{fast.average:.6f}",
                  f"{diff:.1e}", *extra[1])
    table.add_row("detection_map (rskp, snippet grid)", f"{t_rskp:.4f}", "", "", "", *extra[2])
    Console(width=180).print(table)
    return 0 if diff <= 1e-9 and (official is None or official[2] <= 1e-9) else 1


if __name__ == "__main__":
    sys.exit(main())
