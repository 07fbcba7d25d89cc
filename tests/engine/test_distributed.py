"""Multi-process training: two gloo processes on the CPU, started as torchrun would (WORLD_SIZE, RANK, ...), train
like one process. Tiny data (16-d features, 10 videos) as in test_engine.py; both processes run once per module.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from _tiny import tiny_dataset, train_epochs

from rskp_plugin.config_io import apply_overrides
from rskp_plugin.data import collate
from rskp_plugin.engine import Datasets, ExperimentConfig, Trainer
from rskp_plugin.engine.distributed import shard_group

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="this torch build has no torch.distributed")

WORLD = 2
TIMEOUT_S = 120  # a deadlocked collective fails the test instead of hanging the suite


def make_datasets() -> Datasets:
    return Datasets(train=tiny_dataset(10, 0, "train"), test=tiny_dataset(6, 1, "test"),
                    heldout=tiny_dataset(4, 2, "heldout"), collate=collate)


def config(*overrides: str) -> ExperimentConfig:
    """FAC-Net with RSKP on tiny data, no dropout. Groups of 3 videos over 10 videos: 3, 3, 3, 1, so the ranks'
    shares differ in size, and in the last group one rank has no video at all."""
    base = ExperimentConfig()
    base = attrs.evolve(base, head=attrs.evolve(base.head, name="facnet", options={"embed_dim": 16, "dropout": 0.0}))
    return apply_overrides(base, [
        "optimizer.lr=1e-3", "optimizer.accumulation=3", "optimizer.batch_size=2", "train.output_dir=''",
        "train.eval_interval=1", "train.device=cpu", *overrides,
    ])


WARMUP_ONLY = ("train.epochs=1", "rskp.memory.warmup_epochs=100")
MEMORY_ON = ("train.epochs=2", "rskp.memory.warmup_epochs=0")


def _worker(rank: int, ports: tuple[int, int], out: str) -> None:
    """One rank: a warm-up epoch through ``fit`` (run folder written by rank 0), then two epochs with the memory
    bank through the loop ``fit`` runs, each in its own process group created by the trainer."""
    torch.set_num_threads(1)
    os.environ.update({"WORLD_SIZE": str(WORLD), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1"})
    out_dir = Path(out)
    datasets = make_datasets()

    os.environ["MASTER_PORT"] = str(ports[0])
    trainer = Trainer(config(*WARMUP_ONLY, f"train.output_dir={out_dir / f'run{rank}'}"), datasets=datasets,
                      progress=False)
    assert (trainer.rank, trainer.world_size) == (rank, WORLD) and dist.is_initialized()
    result = trainer.fit()
    torch.save({"model": trainer.model.state_dict(), "group_left": dist.is_initialized(),
                "history": len(result.history)}, out_dir / f"warmup{rank}.pt")

    os.environ["MASTER_PORT"] = str(ports[1])
    trainer = Trainer(config(*MEMORY_ON), datasets=datasets, progress=False)
    trainer.train_epoch(0)
    trainer.epoch = 1
    assert trainer.memory_due
    trainer.initialize_memory()
    filled = {k: v.clone() for k, v in trainer.model.memory.state_dict().items()}
    trainer.train_epoch(1)
    trainer.close()
    torch.save({"filled": filled, "memory": trainer.model.memory.state_dict(), "model": trainer.model.state_dict()},
               out_dir / f"memory{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> tuple[Path, list[dict], list[dict]]:
    out = tmp_path_factory.mktemp("ddp")
    ports = (_free_port(), _free_port())
    context = mp.spawn(_worker, args=(ports, str(out)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {WORLD} training processes did not finish in {TIMEOUT_S} s")
    load = lambda name: [torch.load(out / f"{name}{r}.pt", weights_only=True) for r in range(WORLD)]
    return out, load("warmup"), load("memory")


def single_process(overrides: tuple[str, ...], epochs: int) -> Trainer:
    assert "WORLD_SIZE" not in os.environ
    return train_epochs(config(*overrides), make_datasets(), epochs)


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def test_two_processes_train_as_one(ranks) -> None:
    """Warm-up epoch (no memory bank): each step sums the group's gradients over both ranks."""
    out, warmup, _ = ranks
    one = single_process(WARMUP_ONLY, 1).model.state_dict()
    assert max_difference(warmup[0]["model"], one) < 1e-5
    a, b = warmup[0]["model"], warmup[1]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # every rank stepped on the same summed gradient
    untrained = Trainer(config(*WARMUP_ONLY), datasets=make_datasets(), progress=False).model.state_dict()
    assert max_difference(one, untrained) > 1e-4  # training moved the weights: the comparison can fail
    # rank 0 alone evaluates and writes the run folder; fit destroyed the process group it created
    assert warmup[0]["history"] == 1 and warmup[1]["history"] == 0
    assert {p.name for p in (out / "run0").iterdir()} >= {"best.pt", "last.pt", "results.json"}
    assert not (out / "run1").exists()
    assert not warmup[0]["group_left"] and not warmup[1]["group_left"]


def test_memory_banks_stay_identical_across_ranks(ranks) -> None:
    _, _, memory = ranks
    for key in ("filled", "memory"):
        a, b = memory[0][key], memory[1][key]
        assert all(torch.equal(a[k], b[k]) for k in a), key
    assert bool(memory[0]["memory"]["ready"]) and bool(torch.isfinite(memory[0]["memory"]["scores"]).all())
    # the bank filled from both ranks' halves of the training set is the one a single process fills
    one = single_process(MEMORY_ON, 1).model.memory.state_dict()
    assert max_difference(memory[0]["filled"], one) < 1e-4
    a, b = memory[0]["model"], memory[1]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_groups_are_dealt_to_ranks_by_length() -> None:
    shares = shard_group([30, 10, 25, 5, 12], 2)
    assert [s.tolist() for s in shares] == [[0, 1], [2, 3, 4]]  # 30 + 10 vs 25 + 12 + 5 snippets
    assert [s.tolist() for s in shard_group([7], 3)] == [[0], [], []]
    lengths = np.random.default_rng(0).integers(1, 100, size=10).tolist()
    for world in (1, 2, 3, 4):
        flat = np.concatenate(shard_group(lengths, world))
        assert sorted(flat.tolist()) == list(range(10))
