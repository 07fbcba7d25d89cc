"""Train one configuration and print, per epoch, the mean of every weighted loss term and, at each evaluation,
the test AVG mAP (%), classification mAP (%) and the number of detections: the tool behind the STPN notes in
RESULTS.md.

    OMP_NUM_THREADS=1 python benchmarks/loss_trace.py --head stpn --set train.epochs=15 \
        --set rskp.memory.warmup_epochs=6 --set train.eval_interval=3 [--no-rskp] [--set rskp.losses.distillation=0]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict


from rskp_plugin.engine import Trainer, load_experiment


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="quick", help="experiment config (file or packaged name)")
    p.add_argument("--head", default="facnet", help="head name")
    p.add_argument("--no-rskp", action="store_true", help="train the head alone")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides KEY=VALUE")
    args = p.parse_args(argv)
    config = load_experiment(args.config, [
        f"head.name={args.head}", "train.output_dir=''", f"rskp_enabled={not args.no_rskp}", *args.overrides,
    ])
    trainer = Trainer(config, progress=False)
    terms: dict[str, list[float]] = defaultdict(list)
    forward = trainer.model.forward

    def traced(*a, **k):  # record every loss term of every training forward
        out = forward(*a, **k)
        for name, value in out.losses.items():
            terms[name].append(float(value.detach()))
        return out

    trainer.model.forward = traced
    for epoch in range(config.train.epochs):
        terms.clear()
        trainer.fit(stop_after=epoch + 1)
        line = " ".join(f"{n}={sum(v) / len(v):.4f}" for n, v in terms.items())
        last = trainer.history[-1] if trainer.history and trainer.history[-1]["epoch"] == epoch + 1 else None
        if last is not None:
            test = last["test"]
            line += (f" | AVG {test['avg_map_percent']:.2f} cls-mAP {test['cmap_percent']:.1f} "
                     f"detections {test['detections']}")
        print(f"epoch {epoch + 1}: {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
