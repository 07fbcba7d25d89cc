"""Time the data layer: the synthetic default (2048-wide features, 412 videos) and, with --wtalc, reading it back.

    python benchmarks/data_loading.py [--repeats 3] [--feature-dim 2048] [--wtalc]

The target (issue: data layer) is under 10 s for the synthetic default. Wall time depends on what else runs on
the machine, so process CPU time and the load average are printed beside it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from rich.console import Console
from rich.table import Table

from rskp_plugin.data import load_wtalc, make_synthetic, write_wtalc


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (the best and all are shown)")
    parser.add_argument("--feature-dim", type=int, default=2048, help="feature width D")
    parser.add_argument("--wtalc", action="store_true", help="also time write_wtalc + load_wtalc of both subsets")
    args = parser.parse_args()
    table = Table(title=f"Data layer timings (D={args.feature_dim}, torch threads {torch.get_num_threads()}, "
                        f"{os.cpu_count()} CPUs)")
    for column in ("step", "videos", "snippets", "wall s (best)", "wall s (all)", "CPU s (best)", "load avg 1 min"):
        table.add_column(column, justify="right")
    runs = [_timed(lambda: make_synthetic(feature_dim=args.feature_dim)) for _ in range(args.repeats)]
    train, test = runs[0][0]
    videos, snippets = len(train) + len(test), sum(v.num_snippets for ds in (train, test) for v in ds)
    table.add_row("make_synthetic()", str(videos), str(snippets), f"{min(r[1] for r in runs):.2f}",
                  " ".join(f"{r[1]:.2f}" for r in runs), f"{min(r[2] for r in runs):.2f}", f"{os.getloadavg()[0]:.2f}")
    if args.wtalc:
        with tempfile.TemporaryDirectory() as tmp:
            _, wall, cpu = _timed(lambda: write_wtalc(train, test, tmp))
            table.add_row("write_wtalc", str(videos), str(snippets), f"{wall:.2f}", f"{wall:.2f}", f"{cpu:.2f}",
                          f"{os.getloadavg()[0]:.2f}")
            reads = [_timed(lambda: (load_wtalc(tmp, subset="validation"), load_wtalc(tmp, subset="test")))
                     for _ in range(args.repeats)]
            table.add_row("load_wtalc (both subsets)", str(videos), str(snippets), f"{min(r[1] for r in reads):.2f}",
                          " ".join(f"{r[1]:.2f}" for r in reads), f"{min(r[2] for r in reads):.2f}",
                          f"{os.getloadavg()[0]:.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
