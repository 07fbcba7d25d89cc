"""Markdown tables of ``rskp bench --ablation`` results on several data sets, beside the paper's THUMOS14 numbers.

    python benchmarks/ablation_summary.py synthetic=SYN.json dev=DEV.json [--gain-over ROW]

Each ``NAME=FILE`` is the ``--output`` of one ``rskp bench --ablation TABLE|all`` run (one head). For every table the
rows keep the paper's order; a data set's column holds the mean AVG mAP (%) +- sample std over seeds and the per-seed
values; "Δ" is the mean per-seed difference to the table's reference row (Table 3: the baseline; the others: the
default RSKP row without the memory bank: EM-Att / eq. 6 / the closed form, and for the supplement Table 3's
"+pseudo-label supervision"), which pairs the runs of a seed. The last line of a table says
whether the order of the rows by AVG agrees with the paper's (Kendall's tau over the rows that have a paper number).
"""

from __future__ import annotations

import argparse
import json
from itertools import combinations
from typing import Any

# the (table, row) each table is read against: the supplement's variants are of the model without the memory bank,
# Table 3's "+pseudo-label supervision" (the supplement's "full model w/o memory bank", 44.2 in the paper)
REFERENCE = {"table3": ("table3", "baseline"), "table4": ("table4", "EM-Att"), "table5": ("table5", "eq. 6 (BiRW)"),
             "fig5": ("fig5", "closed form (eq. 6)"), "supp": ("table3", "+pseudo-label supervision")}


def _load(path: str) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    results = data if isinstance(data, list) else [data]
    return {r["ablation"]: r for r in results}


def _kendall(a: list[float], b: list[float]) -> float | None:
    pairs = list(combinations(range(len(a)), 2))
    if not pairs:
        return None
    score = sum((1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 if (a[i] - a[j]) * (b[i] - b[j]) < 0 else 0)
                for i, j in pairs)
    return score / len(pairs)


def table(name: str, sets: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The markdown lines of ablation ``name`` over the data sets ``sets`` (data name -> ablation -> result)."""
    first = next(r[name] for r in sets.values() if name in r)
    variants = [row["variant"] for row in first["rows"]]
    paper = {row["variant"]: row.get("paper") for row in first["rows"]}
    ref_table, ref = REFERENCE.get(name, (name, None))
    head = "| row | paper THUMOS14 0.3 / 0.5 / 0.7 / AVG |" + "".join(
        f" {d}: AVG mean ± std (seeds) | {d}: Δ |" for d in sets)
    lines = [head, "| --- | --- |" + " --- | ---: |" * len(sets)]
    ours: dict[str, dict[str, float]] = {d: {} for d in sets}
    for v in variants:
        p = paper[v]
        cells = [v, " / ".join(f"{p[k]:.1f}" for k in ("0.3", "0.5", "0.7", "AVG")) if p else "—"]
        for d, results in sets.items():
            rows = {row["variant"]: row for row in results.get(name, {}).get("rows", [])}
            row = rows.get(v)
            if row is None:
                cells += ["not run", ""]
                continue
            seeds = [s["avg_map_percent"] for s in row["per_seed"]]
            ours[d][v] = row["avg_map_percent_mean"]
            cells.append(f"{row['avg_map_percent_mean']:.1f} ± {row['avg_map_percent_std']:.1f} "
                         f"({', '.join(f'{x:.1f}' for x in seeds)})")
            ref_rows = {r["variant"]: r for r in results.get(ref_table, {}).get("rows", [])}
            base = ref_rows.get(ref) if ref else None
            if base is None or v == ref:
                cells.append("")
            else:
                diffs = [a["avg_map_percent"] - b["avg_map_percent"] for a, b in zip(row["per_seed"], base["per_seed"])]
                cells.append(f"{sum(diffs) / len(diffs):+.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    with_paper = [v for v in variants if paper[v]]
    for d in sets:
        vs = [v for v in with_paper if v in ours[d]]
        tau = _kendall([paper[v]["AVG"] for v in vs], [ours[d][v] for v in vs])
        if tau is not None:
            notes.append(f"{d}: Kendall's tau with the paper's order {tau:+.2f} over {len(vs)} rows")
    if notes:
        lines.append("")
        lines.append("Order of rows by AVG vs the paper: " + "; ".join(notes) + ".")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", metavar="NAME=FILE", help="data-set name and its ablation results JSON")
    args = parser.parse_args(argv)
    sets = {}
    for item in args.files:
        name, _, path = item.partition("=")
        if not path:
            parser.error(f"expected NAME=FILE, got {item!r}")
        sets[name] = _load(path)
    names = list(dict.fromkeys(t for results in sets.values() for t in results))
    for name in names:
        print(f"#### {name}\n")
        print("\n".join(table(name, sets)))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
