"""Training speed: epoch time of each head alone vs with RSKP, batched vs one video at a time, in one run.

    python benchmarks/speed.py                                  # all heads, D = d = 2048, 40 synthetic videos
    python benchmarks/speed.py --heads wum --videos 200 --device cuda --output speed.json

For every head and both variants (head alone, head + RSKP) it times training epochs in the two loops of the
engine: ``batch_size=1`` (the official loop: forward + backward per video, Adam step every 10 videos) and
``batch_size=10`` (padded, length-grouped micro-batches, the default). RSKP is timed after warm-up, with the
memory bank filled and the inter-video branch on (its most expensive phase; docs/heads.md 2.4). The head alone and the
head with RSKP train side by side, their epochs interleaved (alone, RSKP, alone, ...), so that a slow spell of the
machine hits both; each cell is the median over ``--repeats`` epochs after one untimed epoch each. Wall-clock and
process CPU seconds are both recorded (the CPU time is the robust one on a shared machine). The paper reports about 2x for RSKP with its dense l x l
inverse; the target here is below 1.3x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import attrs
import torch

from rskp_plugin.config_io import apply_overrides
from rskp_plugin.engine import Trainer, build_datasets, environment, load_experiment, resolve_device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--heads", nargs="+", default=["facnet", "stpn", "bm", "wum"], help="heads to time")
    p.add_argument("--feature-dim", type=int, default=2048, help="synthetic feature width D")
    p.add_argument("--embed-dim", type=int, default=None, help="head embedding width d (default: D)")
    p.add_argument("--videos", type=int, default=40, help="synthetic training videos per epoch (THUMOS14: 200)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per cell (median reported)")
    p.add_argument("--modes", nargs="+", default=["batched", "sequential"], choices=["batched", "sequential"],
                   help="training loops to time")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--output", default=None, help="write the measurements as JSON")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="experiment config override for both variants, repeatable (e.g. "
                        "rskp.propagation.head_gradient=true)")
    p.add_argument("--profile", action="store_true",
                   help="also profile one batched epoch per head and variant with torch.profiler (top operators)")
    return p.parse_args(argv)


def time_interleaved(trainers: list[Trainer], repeats: int) -> list[tuple[float, float]]:
    """Median wall and CPU seconds of ``repeats`` training epochs per trainer, after one untimed epoch each; the
    trainers' epochs alternate, so drifts in machine speed reach every trainer alike."""
    syncs = [torch.cuda.synchronize if t.device.type == "cuda" else (lambda: None) for t in trainers]
    for trainer in trainers:
        trainer.train_epoch(0)
    walls: list[list[float]] = [[] for _ in trainers]
    cpus: list[list[float]] = [[] for _ in trainers]
    for epoch in range(1, repeats + 1):
        for k, (trainer, sync) in enumerate(zip(trainers, syncs)):
            sync()
            wall, cpu = time.perf_counter(), time.process_time()
            trainer.train_epoch(epoch)
            sync()
            walls[k].append(time.perf_counter() - wall)
            cpus[k].append(time.process_time() - cpu)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(walls, cpus)]


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    d = args.embed_dim or args.feature_dim
    base = apply_overrides(load_experiment(None), [
        f"data.feature_dim={args.feature_dim}", f"data.num_train={args.videos}", "data.num_test=1",
        f"head.options={{embed_dim: {d}}}", f"train.device={args.device}", "train.output_dir=''",
        "rskp.memory.warmup_epochs=0",
        f"train.threads={torch.get_num_threads()}",  # every Trainer sets its config's count: keep this one
    ] + args.overrides)
    datasets = build_datasets(base)
    console = Console(width=200)
    rows = []
    for head in args.heads:
        row = {"head": head}
        for mode in args.modes:
            trainers = {}
            for variant in ("head", "head+rskp"):
                cfg = attrs.evolve(
                    base, head=attrs.evolve(base.head, name=head), rskp_enabled=variant == "head+rskp",
                    optimizer=attrs.evolve(base.optimizer, batch_size=10 if mode == "batched" else 1),
                )
                trainer = Trainer(cfg, datasets=datasets, progress=False)
                if cfg.rskp_enabled:
                    trainer.epoch = 1
                    trainer.initialize_memory()  # steady state after warm-up: inter branch and memory updates on
                trainers[variant] = trainer
            timed = time_interleaved(list(trainers.values()), args.repeats)
            for (variant, trainer), (wall, cpu) in zip(trainers.items(), timed):
                if args.profile and mode == "batched":
                    from torch.profiler import ProfilerActivity, profile

                    with profile(activities=[ProfilerActivity.CPU]) as prof:
                        trainer.train_epoch(args.repeats + 1)
                    console.print(f"profile: {head} {variant}, one batched epoch")
                    console.print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
                row[f"{variant}/{mode}"] = {"wall_s": wall, "cpu_s": cpu}
                console.log(f"{head} {variant} {mode}: {wall:.2f} s wall, {cpu:.2f} s CPU per epoch")
            row[f"ratio/{mode}"] = row[f"head+rskp/{mode}"]["wall_s"] / row[f"head/{mode}"]["wall_s"]
            row[f"ratio_cpu/{mode}"] = row[f"head+rskp/{mode}"]["cpu_s"] / row[f"head/{mode}"]["cpu_s"]
        if len(args.modes) == 2:
            for variant in ("head", "head+rskp"):
                row[f"speedup/{variant}"] = row[f"{variant}/sequential"]["wall_s"] / row[f"{variant}/batched"]["wall_s"]
        rows.append(row)

    device = resolve_device(args.device)
    table = Table(title=f"Training epoch time, {args.videos} synthetic videos, D={args.feature_dim}, d={d}, {device}"
                        f" ({torch.get_num_threads()} threads); wall s (CPU s)")
    table.add_column("head")
    for mode in args.modes:
        table.add_column(f"alone, {mode}", justify="right")
        table.add_column(f"+RSKP, {mode}", justify="right")
        table.add_column(f"RSKP/alone {mode}", justify="right")
    if len(args.modes) == 2:
        table.add_column("batched speed-up alone / +RSKP", justify="right")
    for row in rows:
        cells = []
        for mode in args.modes:
            for variant in ("head", "head+rskp"):
                cell = row[f"{variant}/{mode}"]
                cells.append(f"{cell['wall_s']:.2f} ({cell['cpu_s']:.2f})")
            cells.append(f"{row[f'ratio/{mode}']:.2f}x ({row[f'ratio_cpu/{mode}']:.2f}x)")
        if len(args.modes) == 2:
            cells.append(f"{row['speedup/head']:.1f}x / {row['speedup/head+rskp']:.1f}x")
        table.add_row(row["head"], *cells)
    console.print(table)
    if args.output:
        payload = {"args": vars(args), "rows": rows, "environment": environment(device)}
        Path(args.output).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
