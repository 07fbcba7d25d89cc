"""Summarise ``rskp-bench --selection heldout --output FILE`` results: both model selections from the same runs.

A held-out run evaluates the test set and the held-out training videos at every evaluation epoch, so the same
training runs give two rows per head: the epoch chosen on the held-out videos (honest) and the epoch best on the
test set (the paper's practice, optimistic). For each it prints the head alone, head + RSKP, the mean gain with its
per-seed values and the worst seed, and, at RSKP's held-out-selected epoch, the AVG of the main branch and of the
distillation teacher (the diagnostics of README.md, "Diagnostics").

    python benchmarks/table6_summary.py runs/bench-*/results.json [--markdown]

Checks printed beside each row (issue targets): mean gain >= 0 and no seed below -1 AVG. Each gain comes with its
95 % paired interval, mean +- t(0.975, n - 1) x sd / sqrt(n) over the n seeds (Student's t; wide with 3 seeds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


#: t(0.975, df) for df = 1..10 (Student's t quantiles); beyond 10 the normal 1.96 is within 12 %.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def paired_interval(gains: np.ndarray) -> float:
    """Half-width of the 95 % interval of the mean of paired per-seed gains (0 for one seed)."""
    n = len(gains)
    if n < 2:
        return 0.0
    return float(_T975.get(n - 1, 1.96) * gains.std(ddof=1) / np.sqrt(n))


def _test_best(run: dict[str, Any]) -> float:
    """Best test-set AVG over the run's evaluation epochs (the fused prediction the run reports)."""
    return max(line["branches"]["fused"]["avg"] for line in run["diagnostics"])


def _at_selected(run: dict[str, Any], branch: str) -> float | None:
    for line in run["diagnostics"]:
        if line["epoch"] == run["epoch"]:
            entry = (line.get("branches") or {}).get(branch)
            return None if entry is None else float(entry["avg"])
    return None


def _data_name(result: dict[str, Any]) -> str:
    """The data set a result was trained on: "synthetic", or a file-based set's dataset name."""
    data = (result.get("config") or {}).get("data") or {}
    if result.get("data") in ("wtalc", "folders") and data.get("dataset_name"):
        return str(data["dataset_name"])
    return str(result.get("data"))


def _head_name(result: dict[str, Any]) -> str:
    """The head, with its recipe where it is not the head's own (``--head-recipe none``: "bas (recipe none)")."""
    recipe = ((result.get("config") or {}).get("head") or {}).get("recipe", "builtin")
    return str(result["head"]) if recipe in (None, "builtin") else f"{result['head']} (recipe {recipe})"


def summarise(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows (one per selection) for one head's bench result."""
    head_runs, rskp_runs = (row["per_seed"] for row in result["rows"])
    rows = []
    for selection, pick in (("held-out", lambda r: r["avg_map_percent"]), ("test", _test_best)):
        alone = np.array([pick(r) for r in head_runs])
        rskp = np.array([pick(r) for r in rskp_runs])
        gains = rskp - alone
        rows.append({
            "head": _head_name(result), "data": _data_name(result), "selection": selection, "seeds": len(gains),
            "alone": float(alone.mean()), "rskp": float(rskp.mean()), "gain": float(gains.mean()),
            "per_seed": [round(float(g), 1) for g in gains], "worst": float(gains.min()),
            "interval": paired_interval(gains),
            "ok": bool(gains.mean() >= 0 and gains.min() >= -1.0),
        })
    teacher = [_at_selected(r, "teacher") for r in rskp_runs]
    main = [_at_selected(r, "main") for r in rskp_runs]
    if all(t is not None for t in teacher) and all(m is not None for m in main):
        rows[0]["teacher"], rows[0]["main"] = float(np.mean(teacher)), float(np.mean(main))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="rskp-bench --output files (one head or --head all)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead of text")
    args = parser.parse_args(argv)
    rows = []
    for path in args.files:
        data = json.loads(Path(path).read_text())
        for result in data if isinstance(data, list) else [data]:
            rows.extend(summarise(result))
    if args.markdown:
        print("| data | head | selection | alone | + RSKP | gain (per seed) | 95 % interval | worst seed | main / teacher"
              " at selected epoch | target |")
        print("| --- | --- | --- | ---: | ---: | --- | --- | ---: | --- | --- |")
    for r in rows:
        diag = f"{r['main']:.1f} / {r['teacher']:.1f}" if "teacher" in r else ""
        gains = ", ".join(f"{g:+.1f}" for g in r["per_seed"])
        ok = "met" if r["ok"] else "missed"
        if args.markdown:
            print(f"| {r['data']} | {r['head']} | {r['selection']} | {r['alone']:.1f} | {r['rskp']:.1f} | "
                  f"{r['gain']:+.1f} ({gains}) | ±{r['interval']:.1f} | {r['worst']:+.1f} | {diag} | {ok} |")
        else:
            print(f"{r['data']:17s} {r['head']:19s} {r['selection']:9s} alone {r['alone']:5.1f}  +RSKP {r['rskp']:5.1f}"
                  f"  gain {r['gain']:+5.1f} ±{r['interval']:4.1f} ({gains})  worst {r['worst']:+5.1f}  {diag:13s} {ok}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
