"""One training run of a head (alone or with RSKP) under config overrides; one JSON line on stdout.

The quick recipe with held-out selection, as ``rskp-bench --selection heldout`` trains its rows, for comparing RSKP
variants without training the head alone every time. The line holds the held-out-selected test AVG, the best test
AVG over epochs, the last one, the curves, and the per-branch AVG and loss terms of every evaluation (README.md,
"Diagnostics"). benchmarks/RESULTS.md ("Transfer") lists the variants it was run with.

    OMP_NUM_THREADS=1 python benchmarks/transfer_variants.py HEAD {synthetic,dev} SEED [--no-rskp] [KEY=VALUE ...]

``dev`` is the speech development set in ../shared/data/japanesevowels-tal (``--data-root`` and ``--dataset-name``
to point at another W-TALC set, e.g. the one ``make_motion_set.py`` builds).
"""

from __future__ import annotations

import argparse
import json
import time

import attrs

from rskp_plugin.config_io import apply_overrides
from rskp_plugin.engine import Trainer, build_datasets, load_experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("head")
    parser.add_argument("data", choices=("synthetic", "dev"))
    parser.add_argument("seed", type=int)
    parser.add_argument("overrides", nargs="*", help="experiment config overrides, e.g. rskp.teacher.source=ensemble")
    parser.add_argument("--no-rskp", action="store_true", help="train the head alone")
    parser.add_argument("--data-root", default="../shared/data/japanesevowels-tal")
    parser.add_argument("--dataset-name", default="JapaneseVowelsTAL", help="the W-TALC dataset name under --data-root")
    args = parser.parse_args(argv)
    base = ["train.selection=heldout", f"head.name={args.head}", f"train.seed={args.seed}"]
    if args.data == "dev":
        base += ["data.source=wtalc", f"data.root={args.data_root}", f"data.dataset_name={args.dataset_name}"]
    config = apply_overrides(load_experiment("quick"), base + list(args.overrides))
    config = attrs.evolve(config, rskp_enabled=not args.no_rskp, train=attrs.evolve(config.train, output_dir=""))
    started = time.perf_counter()
    fit = Trainer(config, datasets=build_datasets(config), progress=False).fit()
    history = fit.history
    diagnostics = [r.get("diagnostics") or {} for r in history]
    print(json.dumps({
        "head": args.head, "data": args.data, "seed": args.seed, "rskp": not args.no_rskp,
        "overrides": list(args.overrides),
        "heldout_selected": round(fit.best["test"]["avg_map_percent"], 2), "selected_epoch": fit.best["epoch"],
        "test_best": round(max(r["test"]["avg_map_percent"] for r in history), 2),
        "last": round(history[-1]["test"]["avg_map_percent"], 2),
        "test_curve": [round(r["test"]["avg_map_percent"], 1) for r in history],
        "heldout_curve": [round(r["heldout"]["avg_map_percent"], 1) for r in history],
        "branches": [{k: round(v["avg"], 1) for k, v in (d.get("branches") or {}).items() if v} for d in diagnostics],
        "losses": [{k: round(v, 4) for k, v in (d.get("losses") or {}).items()} for d in diagnostics],
        "seconds": round(time.perf_counter() - started),
    }), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
