"""Shared test settings: deterministic hypothesis, single-threaded torch for reproducible timings."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Test tensors are small: one thread is as fast and immune to oversubscription when other work shares the cores.
torch.set_num_threads(1)

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
