"""Per-tIoU detection mAP of ``rskp-bench`` results: the head alone and with RSKP, mean over seeds, at the epoch
the run selected (held-out selection for ``--selection heldout`` runs). One markdown row per head, variant and set.

    python benchmarks/tiou_table.py OUT/*.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from table6_summary import _data_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="rskp-bench --output files")
    args = parser.parse_args(argv)
    tious = None
    lines = []
    for path in args.results:
        with open(path, encoding="utf-8") as fh:
            result = json.load(fh)
        tious = tious or result["tiou"]
        for row in result["rows"]:
            maps = np.array([seed["map_percent"] for seed in row["per_seed"]]).mean(axis=0)
            avg = np.mean([seed["avg_map_percent"] for seed in row["per_seed"]])
            cells = " | ".join(f"{m:.1f}" for m in maps)
            lines.append(f"| {_data_name(result)} | {result['head']} | {row['variant']} | {cells} | {avg:.1f} |")
    print("| data | head | variant | " + " | ".join(f"{t:g}" for t in tious) + " | AVG |")
    print("| --- | --- | --- | " + " | ".join("---:" for _ in tious) + " | ---: |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
