"""benchmarks/fingerprints.py: short runs of every built-in head (the memory bank and each ablation's path
included) end bit for bit where the recorded lines say, on the torch version and platform that recorded them."""

from __future__ import annotations

import importlib.util
import platform
from pathlib import Path

import pytest
import torch

from rskp_plugin.data import collate
from rskp_plugin.engine import Datasets

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _script():
    spec = importlib.util.spec_from_file_location("fingerprints", BENCHMARKS / "fingerprints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recorded() -> tuple[str, dict[str, str]]:
    lines = (BENCHMARKS / "fingerprints.txt").read_text(encoding="utf-8").splitlines()
    where = next(ln[1:].strip() for ln in lines if ln.startswith("# recorded on "))[len("recorded on "):]
    return where, {ln.split(":", 1)[0]: ln for ln in lines if ":" in ln and not ln.startswith("#")}


def test_every_run_ends_where_it_was_recorded() -> None:
    where, recorded = _recorded()
    here = f"torch {torch.__version__} {platform.machine()}"
    if where != here:
        pytest.skip(f"fingerprints recorded on {where}, this is {here}: the bits may differ")
    fp = _script()
    torch.set_num_threads(1)
    datasets = Datasets(train=fp.tiny_dataset(10, 0, "train"), test=fp.tiny_dataset(6, 1, "test"),
                        heldout=fp.tiny_dataset(4, 2, "heldout"), collate=collate)
    assert sorted(recorded) == sorted(name for name, _, _ in fp.RUNS)
    for name, head, overrides in fp.RUNS:
        assert f"{name}: {fp.fingerprint(head, overrides, datasets)}" == recorded[name]
