"""The result objects of ``rskp bench``: statistics over seeds, the gain of RSKP, the diagnosis of seeds where RSKP
loses, the rich table (with the paper's Table 6), and result files (written, merged, upgraded from older keys).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .migrations import LEGACY_RECORD_KEYS
from .errors import ConfigError

# RSKP Table 6 (docs/heads.md section 7): IoU 0.3 / 0.5 / 0.7 / AVG(0.1:0.7), THUMOS14, head alone -> with RSKP.
PAPER_TABLE6: dict[str, dict[str, dict[str, float]]] = {
    "stpn": {"head": {"0.3": 38.4, "0.5": 19.1, "0.7": 4.7, "AVG": 28.9},
             "head+rskp": {"0.3": 46.5, "0.5": 21.8, "0.7": 5.8, "AVG": 33.7}},
    "bm": {"head": {"0.3": 45.2, "0.5": 26.2, "0.7": 8.7, "AVG": 35.3},
           "head+rskp": {"0.3": 47.4, "0.5": 29.3, "0.7": 9.2, "AVG": 37.7}},
    "wum": {"head": {"0.3": 51.0, "0.5": 32.8, "0.7": 10.9, "AVG": 40.4},
            "head+rskp": {"0.3": 53.5, "0.5": 34.0, "0.7": 12.7, "AVG": 42.4}},
    "facnet": {"head": {"0.3": 53.2, "0.5": 34.4, "0.7": 13.7, "AVG": 42.9},
               "head+rskp": {"0.3": 55.8, "0.5": 38.4, "0.7": 13.3, "AVG": 45.2}},
}
VARIANTS = ("head", "head+rskp")


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std (ddof=1; 0 for one seed) over seeds of per-threshold mAP and AVG (percent)."""
    maps = np.array([r["map_percent"] for r in per_seed], dtype=np.float64)  # (seeds, thresholds)
    avgs = np.array([r["avg_map_percent"] for r in per_seed], dtype=np.float64)
    ddof = 1 if len(per_seed) > 1 else 0
    return {
        "map_percent_mean": maps.mean(axis=0).tolist(),
        "map_percent_std": maps.std(axis=0, ddof=ddof).tolist(),
        "avg_map_percent_mean": float(avgs.mean()),
        "avg_map_percent_std": float(avgs.std(ddof=ddof)),
    }


def add_gains(result: dict[str, Any]) -> None:
    """Set the gain of RSKP (percentage points of AVG mAP, per seed, then mean and sample std) on the RSKP row."""
    head_runs, rskp_runs = result["rows"][0]["per_seed"], result["rows"][1]["per_seed"]
    gains = np.array([b["avg_map_percent"] - a["avg_map_percent"] for a, b in zip(head_runs, rskp_runs)])
    result["rows"][1]["gain_percent_mean"] = float(gains.mean())
    result["rows"][1]["gain_percent_std"] = float(gains.std(ddof=1 if len(gains) > 1 else 0))


# Keys of result files written before the keys named their unit (the values were percent already): an evaluation
# record's (``migrations.LEGACY_RECORD_KEYS``) and the final epoch's average of a bench run.
_LEGACY_RUN_KEYS = {**LEGACY_RECORD_KEYS, "final_average": "final_avg_map_percent"}
_LEGACY_ROW_KEYS = ("map_mean", "map_std", "average_mean", "average_std", "gain_mean", "gain_std")


def upgrade_result(result: dict[str, Any]) -> dict[str, Any]:
    """A result object of an older ``--output`` file with today's keys (per-seed runs renamed, summaries dropped:
    ``merge_results`` recomputes them)."""
    for row in result.get("rows", []):
        row["per_seed"] = [{_LEGACY_RUN_KEYS.get(k, k): v for k, v in run.items()} for run in row.get("per_seed", [])]
        for key in _LEGACY_ROW_KEYS:
            row.pop(key, None)
    return result


def diagnose(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For every seed on which RSKP's AVG is below the head's, what the diagnostics say (``explain_gap``)."""
    from .engine.diagnostics import explain_gap

    found = (explain_gap(a, b) for a, b in zip(rows[0]["per_seed"], rows[1]["per_seed"]))
    return [d for d in found if d is not None]


def results_table(result: dict[str, Any], *, paper: bool = False):
    """A rich table: head, head+RSKP and the gain (mean +- std), plus the paper's Table 6 rows if asked."""
    from rich.table import Table

    tiou = result["tiou"]
    title = (f"Table 6, {result['head']}: {result['data']} data, {len(result['seeds'])} seed(s), "
             f"{result['epochs']} epochs, selected on {result['selection']}")
    table = Table(title=title, caption="mAP (%), mean over seeds with the sample std below; gain per seed")
    table.add_column("variant")
    for t in tiou:
        table.add_column(f"{t:g}", justify="right")
    table.add_column("AVG", justify="right")
    rows = {r["variant"]: r for r in result["rows"]}
    for variant in VARIANTS:
        r = rows[variant]
        cells = [f"{m:.1f}\n[dim]±{s:.1f}[/]" for m, s in zip(r["map_percent_mean"], r["map_percent_std"])]
        table.add_row(variant, *cells,
                      f"[bold]{r['avg_map_percent_mean']:.2f}[/]\n[dim]±{r['avg_map_percent_std']:.2f}[/]")
    gain = [b - a for a, b in zip(rows["head"]["map_percent_mean"], rows["head+rskp"]["map_percent_mean"])]
    g, gs = rows["head+rskp"]["gain_percent_mean"], rows["head+rskp"]["gain_percent_std"]
    color = "green" if g > 0 else "red"
    table.add_row("gain", *[f"{x:+.1f}" for x in gain], f"[bold {color}]{g:+.2f}[/]\n[dim]±{gs:.2f}[/]")
    reported = PAPER_TABLE6.get(result["head"])
    if paper and reported:
        for variant in VARIANTS:
            cells = [f"{reported[variant][f'{t:g}']:.1f}" if f"{t:g}" in reported[variant] else "–" for t in tiou]
            table.add_row(f"paper: {variant}", *cells, f"{reported[variant]['AVG']:.1f}", style="dim")
    return table


def ablation_table(result: dict[str, Any], *, paper: bool = False):
    """A rich table of an ablation result: one line per row (mean +- std over seeds), with the paper's mAP at 0.3 /
    0.5 / 0.7 / AVG beside it if asked (THUMOS14 data); rows the paper gives no number for show "–"."""
    from rich.table import Table

    from .ablations import PAPER_NOTES

    tiou = result["tiou"]
    name = result["ablation"]
    title = (f"Ablation {name}, {result['head']}: {result['data']} data, {len(result['seeds'])} seed(s), "
             f"{result['epochs']} epochs, selected on {result['selection']}")
    caption = "mAP (%), mean over seeds with the sample std below"
    if paper:
        caption += "; paper: THUMOS14, IoU 0.3 / 0.5 / 0.7 / AVG(0.1:0.7)"
        if name in PAPER_NOTES:
            caption += f"; {PAPER_NOTES[name]}"
    table = Table(title=title, caption=caption)
    table.add_column("variant")
    for t in tiou:
        table.add_column(f"{t:g}", justify="right")
    table.add_column("AVG", justify="right")
    keys = ("0.3", "0.5", "0.7", "AVG")
    if paper:
        for key in keys:
            table.add_column(f"paper {key}", justify="right", style="dim")
    for r in result["rows"]:
        cells = [f"{m:.1f}\n[dim]±{s:.1f}[/]" for m, s in zip(r["map_percent_mean"], r["map_percent_std"])]
        cells.append(f"[bold]{r['avg_map_percent_mean']:.2f}[/]\n[dim]±{r['avg_map_percent_std']:.2f}[/]")
        if paper:
            reported = r.get("paper")
            cells += [f"{reported[k]:.1f}" if reported else "–" for k in keys]
        table.add_row(r["variant"], *cells)
    return table


def print_diagnosis(result: dict[str, Any], console: Any) -> None:
    """One line per entry of the result's diagnosis (seeds on which RSKP's AVG is below the head's)."""
    for d in result.get("diagnosis", []):
        console.print(f"[yellow]{result['head']}:[/] {d['message']}", highlight=False)


def new_run_folder(parent: Path, head: str, data: str) -> Path:
    """``parent/bench-<head>-<data>-<YYYYmmdd-HHMMSS>[-k]/results.json``: a folder created now, so no other run
    (another process included) can own it; returns the path of the results file inside it."""
    stem = f"bench-{head}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"
    parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        folder = parent / (stem if k == 1 else f"{stem}-{k}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder / "results.json"
    raise ConfigError(f"no free run folder named {stem}-<k> in {os.fspath(parent)}; pass --output FILE")


def write_results(path: Path, results: list[dict[str, Any]], *, single: bool, console: Any) -> None:
    """Write ``results`` (one object if ``single``) as JSON to ``path``, atomically (an interrupt leaves the previous
    file or the new one, never half of one), and say where (``console`` None: silently)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results[0] if single else results, indent=2))
    os.replace(tmp, path)
    if console is not None:
        console.print(f"results written to {os.fspath(path)}", highlight=False)


def merge_results(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Combine result files (objects or lists of objects) per head and ablation table: per-seed runs are pooled (rows
    matched by variant), statistics redone.

    Raises:
        ConfigError: a file is unreadable, or two files disagree on the data, thresholds, epochs, selection or rows,
            or repeat a seed.
    """
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read benchmark results {path!r}: {exc}") from exc
        for result in data if isinstance(data, list) else [data]:
            result = upgrade_result(result)
            head = result["head"]
            key = (head, result.get("ablation", ""))
            what = head if not key[1] else f"{head} (ablation {key[1]})"
            if key not in by_key:
                by_key[key] = json.loads(json.dumps(result))
                continue
            merged = by_key[key]
            for field in ("data", "tiou", "epochs", "selection"):
                if merged[field] != result[field]:
                    raise ConfigError(f"{path}: {what} has {field}={result[field]!r}, another file {merged[field]!r}")
            if set(merged["seeds"]) & set(result["seeds"]):
                raise ConfigError(f"{path}: seeds {sorted(set(merged['seeds']) & set(result['seeds']))} of {what} "
                                  "appear twice")
            variants = [r["variant"] for r in merged["rows"]]
            if [r["variant"] for r in result["rows"]] != variants:
                raise ConfigError(f"{path}: {what} has rows {[r['variant'] for r in result['rows']]}, another file "
                                  f"{variants}; merge runs of the same table only")
            merged["seeds"] += result["seeds"]
            for row, new in zip(merged["rows"], result["rows"]):
                row["per_seed"] += new["per_seed"]
    out = []
    for (_, ablation), result in by_key.items():
        for row in result["rows"]:
            row.update(summarize(row["per_seed"]))
        if not ablation:  # Table 6: the gain of RSKP and the diagnosis of seeds where it loses
            add_gains(result)
            result["diagnosis"] = diagnose(result["rows"])
        out.append(result)
    return out
