"""Compare candidate RSKP defaults across heads and data sets on held-out training videos, and apply the rule that
chooses what a head that declares nothing gets: the candidate with the best worst case over heads and sets (a head
nobody here has seen must not lose), then the best mean.

Input: the JSON files of ``benchmarks/heldout_candidates.py`` (one per head and set, named SET-HEAD.json), run with
``--head-recipe none`` so that every candidate is a change of the defaults alone. Each cell is the paired
difference to the head alone (held-out AVG, mean over the seeds the file holds). Example (benchmarks/RESULTS.md,
"What a head that declares nothing gets"):

    for h in mil bas facnet stpn bm wum; do
      OMP_NUM_THREADS=1 python benchmarks/heldout_candidates.py --head $h --head-recipe none \\
        --candidate "foreground walk:summarizer.region=foreground" ... --output OUT/synthetic-$h.json
    done
    python benchmarks/defaults_study.py OUT/*.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ALONE, DEFAULTS = "head alone", "recipe"


def cells(path: Path) -> tuple[dict[str, float], dict[str, list[float]]]:
    """{candidate: mean paired difference to the head alone}, {candidate: per-seed differences} of one file."""
    runs = json.loads(path.read_text())
    by: dict[str, dict[int, float]] = {}
    for key, run in runs.items():
        name, _, seed = key.rpartition("/")
        by.setdefault(name, {})[int(seed)] = run["heldout_avg"]
    alone = by.pop(ALONE)
    diffs = {name: [avg[s] - alone[s] for s in sorted(avg) if s in alone] for name, avg in by.items()}
    return {n: sum(d) / len(d) for n, d in diffs.items() if d}, diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path, help="SET-HEAD.json files of heldout_candidates.py")
    args = ap.parse_args()
    table: dict[tuple[str, str], dict[str, float]] = {}
    seeds: dict[tuple[str, str], dict[str, list[float]]] = {}
    for path in sorted(args.files):
        data_set, _, head = path.stem.partition("-")
        table[head, data_set], seeds[head, data_set] = cells(path)
    names = [DEFAULTS] + sorted({n for row in table.values() for n in row} - {DEFAULTS})
    complete = [n for n in names if all(n in row for row in table.values())]
    label = {DEFAULTS: "defaults"}
    print("| head | set | " + " | ".join(label.get(n, n) for n in names) + " |")
    print("| --- | --- | " + " | ".join("---:" for _ in names) + " |")
    for (head, data_set), row in table.items():
        print(f"| {head} | {data_set} | " + " | ".join(
            f"{row[n]:+.2f} ({', '.join(f'{x:+.1f}' for x in seeds[head, data_set][n])})" if n in row else ""
            for n in names) + " |")
    worst = {n: min(row[n] for row in table.values()) for n in complete}
    mean = {n: sum(row[n] for row in table.values()) / len(table) for n in complete}
    print("| **worst** | | " + " | ".join(f"{worst[n]:+.2f}" if n in worst else "" for n in names) + " |")
    print("| mean | | " + " | ".join(f"{mean[n]:+.2f}" if n in mean else "" for n in names) + " |")
    if complete:
        best = max(complete, key=lambda n: (round(worst[n], 2), mean[n]))
        print(f"\nRule (best worst case, then best mean) over {len(table)} head-set cells: "
              f"{label.get(best, best)} (worst {worst[best]:+.2f}, mean {mean[best]:+.2f})")
    missing = [n for n in names if n not in complete]
    if missing:
        print("Not in every file (left out of the rule): " + ", ".join(missing))


if __name__ == "__main__":
    main()
