"""Score RSKP settings on held-out training videos, the way ``rskp calibrate`` does, for settings outside its grid.

Each candidate is trained with paired seeds on the training split minus a stratified held-out part (the test split
is never read) and scored by its best held-out AVG, as calibrate scores its grid; the results go to a JSON file
that a rerun extends (finished runs are not trained again). Used for the ActivityNet-shaped evidence in
benchmarks/RESULTS.md:

    OMP_NUM_THREADS=1 python benchmarks/heldout_candidates.py --config activitynet13 --head facnet \\
        --candidate "foreground walk:summarizer.region=foreground" --candidate "walk weight 0.2:propagation.weight=0.2" \\
        --set data.num_train=1000 --set data.num_test=10 --set data.feature_dim=128 \\
        --set head.options.embed_dim=128 --set optimizer.lr=3.3e-4 --set train.epochs=30 \\
        --set rskp.memory.warmup_epochs=14 --seeds 0 --output an-facnet.json

"head alone" and "recipe" (the head's recipe and the config as given) are always trained.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import attrs
import yaml

from rskp_plugin import calibrate as cal
from rskp_plugin.engine import config_to_dict, load_experiment
from rskp_plugin.recipes import apply


def candidate(text: str) -> tuple[str, dict]:
    """``"NAME:key=value,key=value"`` (``rskp`` keys without the prefix) -> (name, overrides)."""
    name, _, settings = text.partition(":")
    overrides = {}
    for item in filter(None, settings.split(",")):
        key, _, raw = item.partition("=")
        overrides[key.strip()] = yaml.safe_load(raw)
    return name.strip(), overrides


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="quick", help="packaged config or YAML file (default: quick)")
    ap.add_argument("--head", required=True, help="registered head name")
    ap.add_argument("--head-recipe", default="builtin", help="builtin, none or a recipe file (default: builtin)")
    ap.add_argument("--candidate", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                    help="an RSKP setting to score beside the head alone and the recipe (repeatable)")
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds (default: 0,1)")
    ap.add_argument("--heldout-fraction", type=float, default=0.25, help="as rskp calibrate (default: 0.25)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once, one torch thread each (default: 2)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--output", required=True, help="JSON results file; an existing one is extended")
    args = ap.parse_args()

    base = load_experiment(args.config, args.set, values={"head.name": args.head, "head.recipe": args.head_recipe})
    candidates = {cal.ALONE: None, "recipe": {}, **dict(candidate(c) for c in args.candidate)}
    out = Path(args.output)
    done = json.loads(out.read_text()) if out.exists() else {}
    jobs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for name, overrides in candidates.items():
            if f"{name}/{seed}" in done:
                continue
            run = attrs.evolve(base, train=attrs.evolve(base.train, seed=seed))
            run = (attrs.evolve(run, rskp_enabled=False) if overrides is None
                   else attrs.evolve(run, rskp=apply(overrides, run.rskp)))
            jobs.append((name, seed, config_to_dict(run)))

    def report(name: str, seed: int, result: dict) -> None:
        done[f"{name}/{seed}"] = {**result, "overrides": candidates[name]}
        print(f"{args.head} {name} seed {seed}: held-out AVG {result['heldout_avg']:.2f} (epoch {result['epoch']}, "
              f"{result['seconds']:.0f} s)", flush=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=1))
        os.replace(tmp, out)

    cal.run_all(jobs, args.heldout_fraction, args.jobs, report)


if __name__ == "__main__":
    main()
