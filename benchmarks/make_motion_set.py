"""Build a second real-signal check set, BasicMotionsTAL, in the W-TALC layout: which motions a smart-watch wearer
performs in a recording, and when.

The development set (../shared/data/japanesevowels-tal) is recorded speech; transfer results are checked on this
one too, so that no default is chosen for one set (benchmarks/RESULTS.md, "Transfer"). It is built from public
recordings and written outside the project; nothing of it ships.

Source: BasicMotions (UEA multivariate archive), as shipped inside the ``aeon`` 1.6.0 wheel
(``aeon/datasets/data/BasicMotions/BasicMotions_{TRAIN,TEST}.ts``; the wheel is read as a zip, not installed):
3-axis accelerometer and 3-axis gyroscope of a smart watch at 10 Hz, 10 s per recording, four activities
(Standing, Walking, Running, Badminton), 40 training and 40 test recordings (10 per activity each).

Construction (deterministic for ``--seed``):

* classes ``walking``, ``running``, ``badminton``; background = Standing recordings (real sensor data of no class);
* a snippet is 5 samples (0.5 s); an instance is a contiguous piece of 4-20 snippets of one recording of its class,
  a background gap a piece of 3-24 snippets of a Standing recording (pieces longer than a recording chain two);
* a video holds 1 or 2 classes (equal odds) with 1-3 instances each, in random order, separated by one gap each,
  plus a gap before and after with probability 0.7 each;
* features are computed on the composed stream (a window next to a change mixes both pieces), per channel: mean,
  standard deviation, minimum, maximum, median, mean absolute first difference, standard deviation of the first
  differences, mean square, range, least-squares slope (10 values over the snippet's 5 samples) and mean,
  standard deviation, minimum and maximum over the centred 15-sample context (edge-padded): 6 x 14 = 84 dims,
  standardised with the mean and standard deviation of all training snippets;
* training videos use TRAIN recordings only, test videos TEST recordings only;
* time: snippet k covers [k, k + 1) x 16/25 s, the library's default snippets_per_second.

    pip download --no-deps aeon==1.6.0 -d /tmp/aeon
    python benchmarks/make_motion_set.py /tmp/aeon/aeon-1.6.0-py3-none-any.whl OUT_DIR

then train with ``--data wtalc --data-root OUT_DIR --dataset-name BasicMotionsTAL``.
"""

from __future__ import annotations

import argparse
import os
import zipfile

import numpy as np

CLASSES = ("Walking", "Running", "Badminton")
BACKGROUND = "Standing"
SNIPPET = 5  # samples per snippet
CONTEXT = 15  # samples of the centred context window
SECONDS_PER_SNIPPET = 16 / 25


def read_ts(text: str) -> tuple[list[np.ndarray], list[str]]:
    """Recordings (channels, samples) and labels of a sktime .ts file with equal-length multivariate series."""
    series, labels, data = [], [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower() == "@data":
            data = True
            continue
        if not data:
            continue
        *channels, label = line.split(":")
        series.append(np.array([[float(v) for v in c.split(",")] for c in channels], dtype=np.float64))
        labels.append(label)
    return series, labels


def snippet_features(stream: np.ndarray) -> np.ndarray:
    """(channels, samples) with samples = SNIPPET x T -> (T, channels x 14) float32."""
    channels, samples = stream.shape
    t = samples // SNIPPET
    win = stream[:, : t * SNIPPET].reshape(channels, t, SNIPPET)  # (c, T, 5)
    diff = np.diff(win, axis=-1)
    x = np.arange(SNIPPET) - (SNIPPET - 1) / 2
    slope = (win * x).sum(-1) / (x * x).sum()
    own = [win.mean(-1), win.std(-1), win.min(-1), win.max(-1), np.median(win, -1), np.abs(diff).mean(-1),
           diff.std(-1), (win * win).mean(-1), win.max(-1) - win.min(-1), slope]
    pad = (CONTEXT - SNIPPET) // 2
    padded = np.pad(stream[:, : t * SNIPPET], ((0, 0), (pad, pad)), mode="edge")
    ctx = np.stack([padded[:, k * SNIPPET: k * SNIPPET + CONTEXT] for k in range(t)], axis=1)  # (c, T, 15)
    context = [ctx.mean(-1), ctx.std(-1), ctx.min(-1), ctx.max(-1)]
    feats = np.stack(own + context, axis=-1)  # (c, T, 14)
    return feats.transpose(1, 0, 2).reshape(t, channels * 14).astype(np.float32)


def piece(rng: np.random.Generator, pool: list[np.ndarray], snippets: int) -> np.ndarray:
    """``snippets`` x SNIPPET samples cut from random recordings of ``pool`` (chained when longer than one)."""
    need, parts = snippets * SNIPPET, []
    while need > 0:
        rec = pool[rng.integers(len(pool))]
        take = min(need, rec.shape[1])
        start = rng.integers(0, rec.shape[1] - take + 1)
        parts.append(rec[:, start: start + take])
        need -= take
    return np.concatenate(parts, axis=1)


def make_video(rng: np.random.Generator, pools: dict[str, list[np.ndarray]]) -> tuple[np.ndarray, list, list]:
    """One composed stream (channels, samples) and its instances as (class, start snippet, end snippet)."""
    classes = list(rng.choice(len(CLASSES), size=int(rng.integers(1, 3)), replace=False))
    instances = [c for c in classes for _ in range(int(rng.integers(1, 4)))]
    rng.shuffle(instances)
    parts, segments, at = [], [], 0

    def gap() -> None:
        nonlocal at
        n = int(rng.integers(3, 25))
        parts.append(piece(rng, pools[BACKGROUND], n))
        at += n

    if rng.random() < 0.7:
        gap()
    for i, c in enumerate(instances):
        if i:
            gap()
        n = int(rng.integers(4, 21))
        parts.append(piece(rng, pools[CLASSES[c]], n))
        segments.append((CLASSES[c].lower(), at, at + n))
        at += n
    if rng.random() < 0.7:
        gap()
    return np.concatenate(parts, axis=1), segments, sorted({CLASSES[c].lower() for c in classes})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", help="the aeon 1.6.0 wheel (pip download --no-deps aeon==1.6.0)")
    parser.add_argument("out", help="output folder (must not exist)")
    parser.add_argument("--videos", type=int, default=200, help="videos per subset (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if os.path.exists(args.out):
        parser.error(f"{args.out} exists; choose a new folder (nothing is overwritten)")
    name = "BasicMotionsTAL"
    try:
        with zipfile.ZipFile(args.wheel) as wheel:
            raw = {s: read_ts(wheel.read(f"aeon/datasets/data/BasicMotions/BasicMotions_{s}.ts").decode())
                   for s in ("TRAIN", "TEST")}
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        parser.error(f"cannot read the BasicMotions recordings from {args.wheel} ({exc}); pass the aeon 1.6.0 wheel "
                     "from: pip download --no-deps aeon==1.6.0 -d DIR")
    rng = np.random.default_rng(args.seed)
    feats, names, subsets, durations, segments, labels, labels_all = [], [], [], [], [], [], []
    for split, subset in (("TRAIN", "validation"), ("TEST", "test")):
        series, tags = raw[split]
        pools = {c: [s for s, t in zip(series, tags) if t == c] for c in (*CLASSES, BACKGROUND)}
        for i in range(args.videos):
            stream, segs, present = make_video(rng, pools)
            f = snippet_features(stream)
            feats.append(f)
            names.append(f"bm_{subset}_{i + 1:04d}".encode())
            subsets.append(subset.encode())
            durations.append([f.shape[0] * SECONDS_PER_SNIPPET])
            segments.append([[s * SECONDS_PER_SNIPPET, e * SECONDS_PER_SNIPPET] for _, s, e in segs])
            labels.append([c for c, _, _ in segs])
            labels_all.append(present)
    train = np.concatenate([f for f, s in zip(feats, subsets) if s == b"validation"])
    mean, std = train.mean(0), train.std(0) + 1e-6
    features = np.empty(len(feats), dtype=object)
    for i, f in enumerate(feats):
        features[i] = ((f - mean) / std).astype(np.float32)
    ann = os.path.join(args.out, f"{name}-Annotations")
    os.makedirs(ann)
    np.save(os.path.join(args.out, f"{name}-I3D-JOINTFeatures.npy"), features, allow_pickle=True)

    def objects(rows: list) -> np.ndarray:
        out = np.empty(len(rows), dtype=object)
        for i, r in enumerate(rows):
            out[i] = r
        return out

    np.save(os.path.join(ann, "videoname.npy"), np.array(names))
    np.save(os.path.join(ann, "subset.npy"), np.array(subsets))
    np.save(os.path.join(ann, "classlist.npy"), np.array([c.lower().encode() for c in CLASSES]))
    np.save(os.path.join(ann, "duration.npy"), np.array(durations, dtype=np.float64))
    np.save(os.path.join(ann, "segments.npy"), objects(segments), allow_pickle=True)
    np.save(os.path.join(ann, "labels.npy"), objects(labels), allow_pickle=True)
    np.save(os.path.join(ann, "labels_all.npy"), objects(labels_all), allow_pickle=True)
    lengths = [f.shape[0] for f in feats]
    fg = sum(e - s for seg in segments for s, e in seg) / SECONDS_PER_SNIPPET
    print(f"{name}: {len(feats)} videos, {sum(lengths)} snippets ({min(lengths)}-{max(lengths)} per video), "
          f"{fg / sum(lengths):.1%} foreground, features {features[0].shape[1]}-d -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
