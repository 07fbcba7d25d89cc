"""Markdown tables of the evidence in recipe files written by ``rskp calibrate`` (single data set or ``--combine``).

    python benchmarks/recipe_summary.py heads/recipes/*.yaml

For each file: the chosen candidate and, per data set, every candidate's held-out AVG per seed, its mean and the
paired difference to the head alone (mean, per seed). Only held-out training videos are behind these numbers.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rskp_plugin.recipes import read_recipe


def _set_table(evidence: dict[str, Any], chosen: str) -> list[str]:
    lines = [f"*{evidence.get('data', '?')}*, seeds {evidence.get('seeds')}, "
             f"{evidence.get('training_videos', '?')} training / {evidence.get('heldout_videos', '?')} held-out videos",
             "", "| candidate | held-out AVG per seed | mean | paired diff (per seed) |", "| --- | --- | --- | --- |"]
    for row in evidence.get("candidates", []):
        name = f"**{row['name']}**" if row["name"] == chosen else row["name"]
        diff = "" if row["name"] == "head alone" else (
            f"{row['diff_mean']:+.2f} ({', '.join(f'{d:+.2f}' for d in row['diff_to_alone'])})")
        lines.append(f"| {name} | {', '.join(f'{a:.2f}' for a in row['heldout_avg'])} | {row['mean']:.2f} | {diff} |")
    return lines + [""]


def summarize(path: str) -> str:
    recipe = read_recipe(path)
    ev = recipe.evidence
    out = [f"#### {recipe.head}: {ev.get('chosen', '(no evidence)')} -> `{recipe.values or '{}'}`", ""]
    if "combined" in ev:
        sets = [c.get("data", "?") for c in ev["combined"]]
        out += ["| candidate | " + " | ".join(sets) + " | mean |", "|" + " --- |" * (len(sets) + 2)]
        for row in ev["candidates"]:
            name = f"**{row['name']}**" if row["name"] == ev["chosen"] else row["name"]
            out.append(f"| {name} | " + " | ".join(f"{d:+.2f}" for d in row["diff_per_set"])
                       + f" | {row['diff_mean']:+.2f} |")
        out += ["", "Per data set (held-out AVG, %):", ""]
        for one in ev["combined"]:
            out += _set_table(one, str(one.get("chosen")))
    elif ev.get("candidates"):
        out += _set_table(ev, str(ev.get("chosen")))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+", help="recipe files written by rskp calibrate")
    args = parser.parse_args(argv)
    sys.stdout.write("\n\n".join(summarize(p) for p in args.recipes) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
