"""Where training runs: one process, or data-parallel over the ranks torchrun started.

The step loop (``engine.loop``) and the warm-up pass (``engine.warmup``) ask a strategy, never torch.distributed:
which videos of a group this process runs, how gradients and numbers are summed over processes, and how memory
bank updates made during a step reach every process's bank (``memory_step``). ``SingleProcess`` does nothing for
each; ``DataParallel`` is ``rskp_plugin.engine.distributed`` behind the same methods.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..method.memory import MemoryBank
from . import distributed


class SingleProcess:
    """Training in this process alone: every method is the identity or a no-op.

    Attributes:
        device: the device this process trains on.
        rank, world_size: 0 and 1.
        owns_process_group: whether ``distributed.setup`` created a process group (``close`` destroys it).
    """

    rank = 0
    world_size = 1

    def __init__(self, device: torch.device, *, owns_process_group: bool = False) -> None:
        self.device = device
        self.owns_process_group = owns_process_group

    @property
    def is_main_process(self) -> bool:
        """True on the rank that evaluates, writes files and prints (rank 0; always in one process)."""
        return self.rank == 0

    def share(self, group: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
        """This process's videos of an accumulation group (indices into the training set, in visiting order).

        Args:
            group: the group's video indices.
            lengths: snippets per video of the group.
        """
        return group

    def sync_module(self, module: nn.Module) -> None:
        """Make every process's parameters and buffers rank 0's."""

    def reduce_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Sum the gradients over processes before an optimiser step."""

    @property
    def sum_floats(self) -> Callable[[float], float] | None:
        """Sums a number over processes (for epoch means); None in one process."""
        return None

    def memory_step(self, memory: MemoryBank | None, num_representatives: int) -> contextlib.AbstractContextManager:
        """The block of one optimiser step (or the warm-up pass): at its end every process's bank holds what one
        process offered all the step's videos would hold. One process updates as the videos come.

        Args:
            memory: the bank updates go to, or None where no update can happen (no bank, or not in use yet).
            num_representatives: n, representative snippets per video.
        """
        return contextlib.nullcontext()

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` in rank order."""
        return [obj]

    def barrier(self) -> None:
        """Wait for every process."""

    def close(self) -> None:
        """Destroy a process group this strategy created; no collective can run afterwards."""
        if self.owns_process_group:
            distributed.teardown()
            self.owns_process_group = False


class DataParallel(SingleProcess):
    """Data-parallel training over the process group (``rskp_plugin.engine.distributed`` says what each rank does).

    Args:
        device: this rank's device.
        owns_process_group: whether ``distributed.setup`` created the group (then ``close`` destroys it).
    """

    def __init__(self, device: torch.device, *, owns_process_group: bool) -> None:
        super().__init__(device, owns_process_group=owns_process_group)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()

    def share(self, group: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
        return group[distributed.shard_group(lengths, self.world_size)[self.rank]]

    def sync_module(self, module: nn.Module) -> None:
        distributed.broadcast_module(module)  # identical already; guards against nondeterministic inits

    def reduce_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        distributed.all_reduce_gradients(parameters)

    @property
    def sum_floats(self) -> Callable[[float], float] | None:
        return lambda value: distributed.all_reduce_sum(value, self.device)

    def memory_step(self, memory: MemoryBank | None, num_representatives: int) -> contextlib.AbstractContextManager:
        if memory is None:
            return contextlib.nullcontext()
        return distributed.gathered_memory_updates(memory, num_representatives)

    def gather_objects(self, obj: Any) -> list[Any]:
        return distributed.gather_objects(obj)

    def barrier(self) -> None:
        distributed.barrier()


def make_strategy(device: torch.device) -> SingleProcess:
    """Join the process group torchrun describes, if it started more than one process (``distributed.setup``),
    and return the strategy for this process; ``device`` may become ``cuda:LOCAL_RANK``."""
    device, owns = distributed.setup(device)
    if distributed.world_size() > 1:
        return DataParallel(device, owns_process_group=owns)
    return SingleProcess(device, owns_process_group=owns)
