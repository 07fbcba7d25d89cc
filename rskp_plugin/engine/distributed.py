"""Multi-process training with torch.distributed, launched by torchrun (docs/design.md section 9).

torchrun starts one process per device and sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; ``Trainer`` sees ``WORLD_SIZE`` > 1 and joins the process group (gloo on the CPU, nccl on CUDA,
one GPU per process: ``cuda:LOCAL_RANK``). What every rank then does:

* the same seeds and the same epoch order; each accumulation group of ``optimizer.accumulation`` videos is dealt
  to the ranks (``shard_group``), each rank runs its share, and the gradients are summed over ranks in one
  all-reduce before the step (``all_reduce_gradients``), so every step uses the sum of the group's per-video
  gradients exactly as one process does;
* memory bank updates offered during a step are collected and applied once at its end, with every rank's
  candidates gathered (``gathered_memory_updates``): all banks stay identical, and the bank after a step is the
  top-s of the stored entries and all the group's candidates, as in one process. Within a step a video reads the
  bank as it stood at the start of the step plus the earlier videos of its own micro-batch (one process also sees
  the group's earlier micro-batches);
* rank 0 alone evaluates, writes checkpoints and ``results.json`` and prints.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import ConfigError
from ..method.memory import MemoryBank


def launched_world_size() -> int:
    """``WORLD_SIZE`` as torchrun set it (1 when the process was started without it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as exc:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; launch with torchrun") from exc


def is_distributed() -> bool:
    """Whether a process group of more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def setup(device: torch.device) -> tuple[torch.device, bool]:
    """Join the process group torchrun describes in the environment, if it started more than one process.

    Args:
        device: the configured device; CUDA without an index becomes ``cuda:LOCAL_RANK``.

    Returns:
        The device this rank trains on, and whether this call created the process group (then the caller
        destroys it with ``teardown``). A group the caller created itself is used as it is.
    """
    if launched_world_size() <= 1 and not is_distributed():
        return device, False
    if not dist.is_available():
        raise ConfigError(
            f"WORLD_SIZE={launched_world_size()} asks for multi-process training, but this torch build has no "
            "torch.distributed; run one process or install a torch build with distributed support"
        )
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return device, False
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend=backend, init_method="env://")
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"WORLD_SIZE={launched_world_size()} but the {backend} process group could not be set up "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); launch with torchrun, which sets "
            "RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT too"
        ) from exc
    return device, True


def teardown() -> None:
    """Destroy the process group (after the last collective of the run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here."""
    dist.barrier()


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (in place)."""
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src)


def shard_group(lengths: Sequence[int], world: int) -> list[np.ndarray]:
    """Deal the videos of one accumulation group to ``world`` ranks with balanced snippet counts.

    Longest video first, each to the rank with the fewest snippets so far (then the fewest videos, then the lowest
    rank); a pure function of the lengths, so every rank computes the same deal.

    Args:
        lengths: snippets per video of the group, in visiting order.
        world: number of ranks.

    Returns:
        One index array into ``lengths`` per rank, each in visiting order (empty when a group has fewer videos
        than ranks); together they cover every video once.
    """
    loads = [0] * world
    shares: list[list[int]] = [[] for _ in range(world)]
    for i in np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable"):
        r = min(range(world), key=lambda k: (loads[k], len(shares[k]), k))
        shares[r].append(int(i))
        loads[r] += int(lengths[i])
    return [np.asarray(sorted(s), dtype=np.int64) for s in shares]


def all_reduce_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks, one flat all-reduce per dtype.

    A rank that ran no video of the step (or never used a parameter) contributes zeros; a parameter without a
    gradient on every rank keeps ``grad`` None, so the optimiser skips it as one process would.
    """
    by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
    for p in parameters:
        if p.requires_grad:
            by_dtype.setdefault(p.dtype, []).append(p)
    for dtype, params in by_dtype.items():
        device = params[0].device
        parts = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=dtype, device=device)
                 for p in params]
        # one trailing count per parameter: on how many ranks it has a gradient
        flags = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=device)
        flat = torch.cat([*parts, flags])
        dist.all_reduce(flat)
        offset = 0
        counts = flat[-len(params):]
        for p, count in zip(params, counts.tolist()):
            if count > 0:
                grad = flat[offset : offset + p.numel()].view_as(p)
                if p.grad is None:
                    p.grad = grad.clone()
                else:
                    p.grad.copy_(grad)
            offset += p.numel()


def all_reduce_sum(value: float, device: torch.device) -> float:
    """The sum of a number over the ranks (float64)."""
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_rows(x: Tensor) -> Tensor:
    """Every rank's ``x`` (the same shape on each) concatenated along dim 0 in rank order, on every rank."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@contextlib.contextmanager
def gathered_memory_updates(memory: MemoryBank, num_representatives: int) -> Iterator[None]:
    """Collect the ``update`` calls a memory bank receives in the block; apply them at its end, gathered.

    A gathered ``MemoryBank.update`` needs the same number of calls with the same batch size on every rank; the
    ranks' shares of a step differ in size and micro-batches. So each rank collects its candidates during the step
    (``MemoryBank.deferred_updates``), and at the end every rank pads its rows to the longest count (padding rows
    have no label, so their candidates score -inf and never fill a slot) and makes exactly one ``update`` call with
    ``gather=all_gather_rows``. The kept set is the top-s of all candidates ever offered, so this equals updating
    as they came.

    Args:
        memory: the memory bank.
        num_representatives: n, the representative snippets per video (the rows a rank without videos pads).
    """
    with memory.deferred_updates() as pending:
        yield
    device = memory.bank.device
    local = sum(r.shape[0] for r, _, _ in pending)
    count = torch.tensor([local], dtype=torch.int64, device=device)
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    rows = int(count.item())
    if rows == 0:
        return
    n, c, d = num_representatives, memory.num_classes, memory.dim
    pad = rows - local
    dtype = memory.bank.dtype  # every rank gathers the bank's dtype, also one that only pads
    reps = torch.cat([r.to(dtype) for r, _, _ in pending] + [torch.zeros(pad, n, d, device=device, dtype=dtype)])
    scores = torch.cat([s.to(dtype) for _, s, _ in pending] + [torch.zeros(pad, n, c, device=device, dtype=dtype)])
    labels = torch.cat([y.to(dtype) for _, _, y in pending] + [torch.zeros(pad, c, device=device, dtype=dtype)])
    memory.update(reps, scores, labels, gather=all_gather_rows)
