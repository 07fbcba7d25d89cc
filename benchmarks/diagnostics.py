"""Cost of the per-epoch diagnostics (``train.diagnostics``): the same RSKP run with them off and on.

    OMP_NUM_THREADS=1 python benchmarks/diagnostics.py --head facnet --data wtalc \
        --data-root ../shared/data/japanesevowels-tal --dataset-name JapaneseVowelsTAL --repeats 2

Quick recipe, head + RSKP, one seed; the two settings alternate ``--repeats`` times. Reported per setting (median
over repeats): training seconds (sum of the epochs), evaluation seconds (every evaluation, diagnostics included) and
the run's wall time. The overhead is (evaluation on - evaluation off) / training on: the extra branch inference,
localisation and scoring, plus the per-step loss bookkeeping inside training (``train_s``). The weights and the
reported numbers of both settings are checked to be identical.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import attrs
import torch


def run(config, datasets, diagnostics: bool) -> dict:
    from rskp_plugin.engine import Trainer

    cfg = attrs.evolve(config, train=attrs.evolve(config.train, diagnostics=diagnostics))
    started = time.perf_counter()
    trainer = Trainer(cfg, datasets=datasets, progress=False)
    fit = trainer.fit()
    wall = time.perf_counter() - started
    evals = fit.eval_times
    return {
        "wall": wall, "train": float(sum(fit.epoch_times)), "eval": float(sum(t["eval_s"] for t in evals)),
        "scoring": float(sum(t["diagnostics_s"] for t in evals)), "tests": [r["test"] for r in fit.history],
        "weights": {k: v.clone() for k, v in trainer.model.state_dict().items()},
    }


def main() -> None:
    from rskp_plugin.engine import build_datasets, load_experiment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head", default="facnet")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--dataset-name", default="Thumos14reduced")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    overrides = [f"head.name={args.head}", f"data.source={args.data}", f"train.seed={args.seed}",
                 "train.output_dir=''", "train.device=cpu"]
    if args.data != "synthetic":
        overrides += [f"data.root={args.data_root}", f"data.dataset_name={args.dataset_name}"]
    config = load_experiment("quick", overrides)
    datasets = build_datasets(config)
    results: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.repeats):
        for diagnostics in (False, True):
            results[diagnostics].append(run(config, datasets, diagnostics))
    off, on = results[False][0], results[True][0]
    same = all(torch.equal(off["weights"][k], on["weights"][k]) for k in off["weights"]) and off["tests"] == on["tests"]
    med = {d: {k: statistics.median(r[k] for r in rs) for k in ("wall", "train", "eval", "scoring")}
           for d, rs in results.items()}
    print(f"{args.head} + RSKP, {args.data} {args.dataset_name if args.data != 'synthetic' else ''}, quick recipe, "
          f"seed {args.seed}, {args.repeats} repeat(s), torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| diagnostics | training (s) | evaluation (s) | branch scoring (s) | wall (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for d in (False, True):
        m = med[d]
        print(f"| {'on' if d else 'off'} | {m['train']:.1f} | {m['eval']:.1f} | {m['scoring']:.1f} | {m['wall']:.1f} |")
    extra = med[True]["eval"] - med[False]["eval"]
    print(f"overhead: evaluation +{extra:.1f} s = {100 * extra / med[True]['train']:.1f} % of training; wall "
          f"{100 * (med[True]['wall'] / med[False]['wall'] - 1):+.1f} %; identical weights and test numbers: {same}")


if __name__ == "__main__":
    main()
