"""Whole-run cost of RSKP: a complete training run (evaluations, memory warm-up pass and diagnostics included) of
each head alone and with RSKP, side by side in one process, and where RSKP's extra time goes.

    OMP_NUM_THREADS=1 python benchmarks/whole_run.py                       # every head, widths 128 and 2048
    OMP_NUM_THREADS=1 python benchmarks/whole_run.py --heads wum --widths 128 --repeats 3 --output run.json

A run is ``Trainer.fit`` of the quick recipe (``rskp train --config quick``: Adam, gradients summed over 10 videos,
the memory bank filled about half-way, evaluation on the test and held-out videos with the per-branch diagnostics)
scaled down so that the whole table takes minutes: ``--videos`` training videos (10 % held out), ``--test-videos``
test videos, ``--epochs`` epochs, the warm-up at half of them and an evaluation every ``--eval-interval`` epochs
(the quick recipe: 200 / 212 videos, 30 epochs, warm-up 14, every 5; evaluation then costs about as much of the run
as here). Width W sets the feature width D and the embedding d (the quick recipe: 128; the paper: 2048).

Timing: the head alone and the head with RSKP alternate (alone, RSKP, alone, RSKP, ...: a slow spell of the shared
machine hits both); each cell is the run with the least process CPU time of ``--repeats`` (with one thread, CPU
time is what the run itself used, which waiting for a busy core does not inflate; wall seconds in brackets). "epoch"
is the mean training epoch (no evaluation, no warm-up pass); "run" is the whole ``fit``.

Profile: timers wrapped around the method's functions from the outside (no module is edited) give each part's
exclusive seconds (a part's time less the parts it calls), split by phase: training epochs, the memory warm-up
pass, evaluation and the per-branch diagnostics. "extra" is RSKP's run minus the head alone's, part by part.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import attrs
import torch

from rskp_plugin.engine import Trainer, build_datasets, environment, load_experiment

PHASES = ("train", "memory fill", "evaluation", "diagnostics")
PARTS = ("embed", "EM", "walk", "head", "teacher", "losses", "memory", "fusion", "backward", "optimizer",
         "localise+score", "other")


class Timers:
    """Exclusive seconds per (phase, part) of wrapped callables; ``other`` is a phase's time outside every part."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.stack: list[list[Any]] = []  # [phase or None, part, child seconds]
        self.patches: list[tuple[Any, str, Any]] = []

    def phase(self) -> str:
        return next((p for p, _, _ in reversed(self.stack) if p is not None), "outside")

    def wrap(self, owner: Any, name: str, part: str, *, phase: str | None = None) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        inner = original.__func__ if isinstance(original, staticmethod) else original

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.stack.append([phase, part, 0.0])
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                _, _, child = self.stack.pop()
                self.seconds[(phase or self.phase(), part)] += spent - child
                if self.stack:
                    self.stack[-1][2] += spent

        setattr(owner, name, staticmethod(timed) if isinstance(original, staticmethod) else timed)
        self.patches.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self.patches):
            setattr(owner, name, original)
        self.patches.clear()

    def take(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {ph: {} for ph in PHASES}
        for (phase, part), s in self.seconds.items():
            if phase in out:
                out[phase][part] = out[phase].get(part, 0.0) + s
        self.seconds = defaultdict(float)
        return out


def wrap_head(timers: Timers, cls: type) -> None:
    """Timers around a head class's forward passes and classification loss (once per class)."""
    if getattr(cls, "_whole_run_timed", False):
        return
    cls._whole_run_timed = True  # type: ignore[attr-defined]
    for name in ("forward", "forward_branches"):
        if name in cls.__dict__:
            timers.wrap(cls, name, "head")
    if "embed" in cls.__dict__:  # the head alone embeds outside its forward, RSKP through ``_embed``
        timers.wrap(cls, "embed", "embed")
    if "classification_loss" in cls.__dict__:
        timers.wrap(cls, "classification_loss", "losses")


def install(timers: Timers) -> None:
    """Timers around the engine's phases and the method's parts (module attributes where they are looked up)."""
    from rskp_plugin.engine import diagnostics, inference, loop, trainer, warmup
    from rskp_plugin.method import losses, memory, representatives, teacher, walks, wrapper
    from rskp_plugin.method import model as model_module
    from rskp_plugin.method.summarizer import EMSummarizer

    timers.wrap(trainer.Trainer, "train_epoch", "other", phase="train")
    timers.wrap(warmup.MemoryWarmup, "fill", "other", phase="memory fill")
    timers.wrap(trainer.Trainer, "evaluate", "other", phase="evaluation")
    timers.wrap(trainer.Trainer, "evaluate_branches", "other", phase="diagnostics")
    W = wrapper.RSKPWrapper
    timers.wrap(W, "embed", "embed")
    timers.wrap(representatives.Representatives, "select", "EM")
    timers.wrap(EMSummarizer, "forward", "EM")
    timers.wrap(walks.Walk, "features", "walk")
    timers.wrap(walks.Walk, "scores", "walk")
    timers.wrap(teacher.Teacher, "pseudo_labels", "teacher")
    timers.wrap(teacher.Teacher, "loss", "losses")
    for name in ("teacher_confidence", "feature_distance"):
        if hasattr(losses, name):
            timers.wrap(losses, name, "losses")
    timers.wrap(model_module, "head_losses", "losses")
    for name in ("update", "retrieve", "retrieve_in_order"):
        timers.wrap(memory.MemoryBank, name, "memory")
    timers.wrap(W, "_offer", "memory")
    timers.wrap(W, "fuse", "fusion")
    timers.wrap(torch.Tensor, "backward", "backward")
    timers.wrap(loop, "step", "optimizer")
    timers.wrap(inference, "localize_outputs", "localise+score")
    timers.wrap(inference, "score_detections", "localise+score")
    timers.wrap(diagnostics, "score_detections", "localise+score")
    timers.wrap(diagnostics, "localize_branches", "localise+score")
    timers.wrap(diagnostics, "score_arrays", "localise+score")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--heads", nargs="+", default=["facnet", "stpn", "bm", "wum"])
    p.add_argument("--widths", nargs="+", type=int, default=[128, 2048], help="D = d")
    p.add_argument("--videos", type=int, default=60, help="synthetic training videos (10 %% held out)")
    p.add_argument("--test-videos", type=int, default=20)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--eval-interval", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1, help="runs per cell (best)")
    p.add_argument("--no-profile", action="store_true", help="time without the part timers")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--output", default=None, help="write the measurements as JSON")
    return p.parse_args(argv)


def run(cfg: Any, datasets: Any, timers: Timers | None) -> dict[str, Any]:
    """One ``fit``: wall and process CPU seconds of the run and of its training epochs, the parts, the last AVG."""
    trainer = Trainer(cfg, datasets=datasets, progress=False)
    epoch_cpu: list[float] = []
    train_epoch = trainer.train_epoch

    def timed_epoch(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return train_epoch(*args, **kwargs)
        finally:
            epoch_cpu.append(time.process_time() - start)

    trainer.train_epoch = timed_epoch  # type: ignore[method-assign]
    start, cpu = time.perf_counter(), time.process_time()
    fit = trainer.fit()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "epoch_s": sum(fit.epoch_times) / len(fit.epoch_times),
            "epoch_cpu_s": sum(epoch_cpu) / len(epoch_cpu),
            "parts": timers.take() if timers is not None else None, "avg_map": fit.final["test"]["avg_map_percent"]}


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    args = parse_args(argv)
    console = Console(width=200)
    timers = None if args.no_profile else Timers()
    if timers is not None:
        install(timers)
    rows: list[dict[str, Any]] = []
    for width in args.widths:
        warmup = max(args.epochs // 2 - 1, 0)
        scaled = [
            f"data.feature_dim={width}", f"head.options={{embed_dim: {width}}}", f"data.num_train={args.videos}",
            f"data.num_test={args.test_videos}", f"train.epochs={args.epochs}",
            f"train.eval_interval={args.eval_interval}", f"rskp.memory.warmup_epochs={warmup}",
            "train.output_dir=''", "train.device=cpu", f"train.threads={torch.get_num_threads()}", *args.overrides,
        ]
        datasets = None
        for head in args.heads:
            recipe = load_experiment("quick", [f"head.name={head}", *scaled])  # the head's recipe, scaled down
            datasets = datasets or build_datasets(recipe)
            cfgs = {v: attrs.evolve(recipe, rskp_enabled=v == "rskp") for v in ("alone", "rskp")}
            if timers is not None:
                wrap_head(timers, type(Trainer(cfgs["alone"], datasets=datasets, progress=False).model.head))
            best: dict[str, dict[str, Any]] = {}
            for _ in range(args.repeats):
                for variant in ("alone", "rskp"):
                    result = run(cfgs[variant], datasets, timers)
                    if variant not in best or result["cpu_s"] < best[variant]["cpu_s"]:
                        best[variant] = result
            row = {"head": head, "width": width, **best}
            for key in ("wall_s", "cpu_s", "epoch_s", "epoch_cpu_s"):
                row[f"ratio/{key}"] = best["rskp"][key] / best["alone"][key]
            rows.append(row)
            console.log(f"{head} W={width}: run CPU {best['alone']['cpu_s']:.1f} s vs {best['rskp']['cpu_s']:.1f} s "
                        f"({row['ratio/cpu_s']:.2f}x; wall {row['ratio/wall_s']:.2f}x), epoch CPU "
                        f"{best['alone']['epoch_cpu_s']:.2f} s vs {best['rskp']['epoch_cpu_s']:.2f} s "
                        f"({row['ratio/epoch_cpu_s']:.2f}x; wall {row['ratio/epoch_s']:.2f}x)")

    table = Table(title=f"Whole run, {args.videos} training / {args.test_videos} test videos, {args.epochs} epochs, "
                        f"{torch.get_num_threads()} thread(s); run with the least CPU time of {args.repeats}; "
                        "CPU s (wall s)")
    for col in ("head", "W", "alone: run", "+RSKP: run", "run ratio", "alone: epoch", "+RSKP: epoch",
                "epoch ratio"):
        table.add_column(col, justify="left" if col == "head" else "right")
    for r in rows:
        a, b = r["alone"], r["rskp"]
        table.add_row(r["head"], str(r["width"]), f"{a['cpu_s']:.1f} ({a['wall_s']:.1f})",
                      f"{b['cpu_s']:.1f} ({b['wall_s']:.1f})", f"{r['ratio/cpu_s']:.2f}x ({r['ratio/wall_s']:.2f}x)",
                      f"{a['epoch_cpu_s']:.2f} ({a['epoch_s']:.2f})", f"{b['epoch_cpu_s']:.2f} ({b['epoch_s']:.2f})",
                      f"{r['ratio/epoch_cpu_s']:.2f}x ({r['ratio/epoch_s']:.2f}x)")
    console.print(table)
    if timers is not None:
        extra = Table(title="RSKP's extra seconds per part over the whole run (+RSKP minus alone, exclusive), by phase")
        extra.add_column("head, W")
        extra.add_column("phase")
        for part in PARTS:
            extra.add_column(part, justify="right")
        extra.add_column("phase total", justify="right")
        for r in rows:
            for phase in PHASES:
                a, b = r["alone"]["parts"][phase], r["rskp"]["parts"][phase]
                cells = [b.get(p, 0.0) - a.get(p, 0.0) for p in PARTS]
                extra.add_row(f"{r['head']}, {r['width']}", phase, *(f"{c:+.2f}" for c in cells),
                              f"{sum(b.values()) - sum(a.values()):+.2f}")
        console.print(extra)
    if args.output:
        Path(args.output).write_text(json.dumps({"args": vars(args), "rows": rows,
                                                 "environment": environment(torch.device("cpu"))}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
