"""Fingerprints of short training runs: a restructuring of the method must leave every number as it was.

    OMP_NUM_THREADS=1 python benchmarks/fingerprints.py            # prints one line per run
    OMP_NUM_THREADS=1 python benchmarks/fingerprints.py --check benchmarks/fingerprints.txt   # exit 1 on a change

Each run trains a built-in head with RSKP (its shipped recipe) for 2 epochs on tiny synthetic videos on the CPU in
float32, then prints the SHA-256 of its final weights and buffers (the memory bank included), the sum of each loss
term of one more labelled forward in training mode, and a digest of the diagnostics' branches and teacher. The
"memory" runs fill the memory bank after the first epoch (warm-up 0), so the inter-video branch, the memory
update and the teacher of eq. 7 from both branches are exercised; the "variant" runs go through each ablation's
code path (representatives, walks, early fusion, the branches' own parameters). Lines are stable across
processes on one machine and torch version; a change of any bit in any weight changes the line.
``fingerprints.txt`` holds the lines of the code as it is, with the torch version and platform they came from
(tests/method/test_fingerprints.py compares with them where those match).
"""

from __future__ import annotations

import argparse
import hashlib
import sys

import numpy as np
import torch

from rskp_plugin.config_io import apply_overrides
from rskp_plugin.data import VideoDataset, VideoRecord, collate
from rskp_plugin.engine import Datasets, Trainer, load_experiment

HEADS = ("facnet", "stpn", "bm", "wum")

#: (name, head, overrides) of every run: each head as it ships, each with the memory bank in use, and the variants.
RUNS: list[tuple[str, str, tuple[str, ...]]] = (
    [(f"{h}", h, ()) for h in HEADS]
    + [(f"{h}-memory", h, ("rskp.memory.warmup_epochs=0",)) for h in HEADS]
    + [(f"facnet-{name}", "facnet", ("rskp.memory.warmup_epochs=0",) + extra) for name, extra in (
        ("official", ("rskp.teacher.source=propagated", "rskp.teacher.weighting=uniform",
                      "rskp.fusion.use_intra_at_test=true")),
        ("kmeans", ("rskp.summarizer.method=kmeans",)),
        ("em_nograd", ("rskp.summarizer.method=em_nograd",)),
        ("discriminative", ("rskp.summarizer.method=discriminative",)),
        ("extremes", ("rskp.summarizer.method=extremes",)),
        ("features", ("rskp.summarizer.method=features",)),
        ("foreground", ("rskp.summarizer.region=foreground",)),
        ("random_walk", ("rskp.propagation.method=random_walk",)),
        ("unrolled", ("rskp.propagation.method=unrolled",)),
        ("scores", ("rskp.propagation.method=scores",)),
        ("early", ("rskp.propagation.inter_fusion=early",)),
        ("no_head_gradient", ("rskp.propagation.head_gradient=false",)),
        ("feature_l1", ("rskp.losses.feature_loss=l1",)),
        ("no_distill", ("rskp.teacher.distill=false",)),
    )]
    + [("stpn-shared", "stpn", ("rskp.memory.warmup_epochs=0", "rskp.propagation.branch_parameters=[]")),
       ("bm-not-factored", "bm", ("rskp.memory.warmup_epochs=0", "rskp.factored_branches=false"))]
)


def tiny_dataset(n: int, seed: int, subset: str, classes: int = 3, dim: int = 16) -> VideoDataset:
    """Videos of 10-40 snippets; class c adds +2 to feature c over one instance."""
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(n):
        length, c = int(rng.integers(10, 40)), i % classes
        x = rng.normal(size=(length, dim)).astype(np.float32)
        s = int(rng.integers(0, length // 2))
        e = s + length // 3
        x[s:e, c] += 2.0
        sps = 25 / 16
        labels = np.eye(classes, dtype=np.float32)[c]
        videos.append(VideoRecord(f"{subset}_{i}", x, labels, length / sps, [[s / sps, e / sps]], [c]))
    return VideoDataset("tiny", subset, [f"class{k}" for k in range(classes)], videos)


def _digest(tensors: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(head: str, overrides: tuple[str, ...], datasets: Datasets) -> str:
    """One run's line: weights digest, loss sums, diagnostics digest."""
    torch.manual_seed(0)
    config = load_experiment(None, [f"head.name={head}"])
    options = {"embed_dim": 16, "dropout": 0.0}
    config = apply_overrides(config, [
        f"head.options={options}", "optimizer.lr=1e-3", "optimizer.batch_size=5", "train.output_dir=''",
        "train.device=cpu", "train.diagnostics=false", *overrides])
    trainer = Trainer(config, datasets=datasets, progress=False)
    for epoch in range(2):
        trainer.train_epoch(epoch)
        trainer.epoch += 1
        if trainer.memory_due:
            trainer.initialize_memory()
    model = trainer.model
    state = model.state_dict()
    weights = _digest([state[k] for k in sorted(state)])
    batch = collate(datasets.train.videos)
    features, mask = torch.as_tensor(batch.features), torch.as_tensor(batch.mask)
    labels = torch.as_tensor(batch.labels).float()
    with torch.no_grad():
        torch.manual_seed(1)
        out = model.train()(features, mask, labels)
    losses = " ".join(f"{k}={float(v):.9g}" for k, v in sorted(out.losses.items()))
    model.eval()
    test = collate(datasets.test.videos)
    branches = model.branch_outputs(torch.as_tensor(test.features), torch.as_tensor(test.mask),
                                    torch.as_tensor(test.labels).float())
    parts = [branches.output.video_scores, branches.output.cas, branches.output.main.tcam]
    for extra in (branches.output.inter, branches.teacher):
        if extra is not None:
            parts += [extra.tcam, extra.cas]
    return f"weights={weights} branches={_digest(parts)}:{branches.teacher_rule} {losses}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", help="a file of lines printed before: exit 1 on any difference")
    parser.add_argument("--only", nargs="*", help="run names to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    datasets = Datasets(train=tiny_dataset(10, 0, "train"), test=tiny_dataset(6, 1, "test"),
                        heldout=tiny_dataset(4, 2, "heldout"), collate=collate)
    lines = []
    for name, head, overrides in RUNS:
        if args.only and name not in args.only:
            continue
        line = f"{name}: {fingerprint(head, overrides, datasets)}"
        print(line, flush=True)
        lines.append(line)
    if args.check:
        with open(args.check, encoding="utf-8") as f:
            saved = {ln.split(":", 1)[0]: ln.rstrip("\n") for ln in f if ":" in ln and not ln.startswith("#")}
        differ = [ln for ln in lines if saved.get(ln.split(":", 1)[0]) != ln]
        for ln in differ:
            print(f"DIFFERS: {ln}\n   was: {saved.get(ln.split(':', 1)[0])}", file=sys.stderr)
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
