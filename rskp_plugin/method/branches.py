"""What the wrapper does with its branches besides running them: fusing their outputs at test time, giving the
propagated branches their own copies of named head parameters, running a head's ``forward_branches`` on other
weights, and keeping RSKP's random draws off the head's random stream.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..protocols import Head, HeadOutput, HeadTraits, Propagated, head_traits


def _weighted_sum(tensors: list[Tensor], weights: list[float]) -> Tensor:
    return sum((w * t for t, w in zip(tensors[1:], weights[1:])), weights[0] * tensors[0])


@contextlib.contextmanager
def separate_random_stream(device: torch.device) -> Iterator[None]:
    """Random draws inside come from a stream forked off the global one, which is left exactly as it was.

    RSKP's own draws (the summariser's initial means; the dropout of the propagated branches of a head without
    ``forward_branches``, which runs the head once per branch) then do not shift the random numbers the head sees:
    with every RSKP loss weight at 0 a wrapped head trains as the head alone does, seed for seed, so Table 6's
    per-seed gain measures RSKP and not a different dropout draw (common random numbers). The forked stream is
    seeded from the global one, so runs stay reproducible.
    """
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"):
        if cuda:  # the CUDA generator's state is host memory: hashing it seeds the fork without a device sync
            state = torch.cuda.get_rng_state(device).numpy().tobytes()
            seed = int.from_bytes(hashlib.blake2b(state, digest_size=8).digest(), "little") >> 2
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)  # this device only; fork_rng restores it
        else:
            seed = int(torch.randint(0, 2**62, ()))
        torch.random.default_generator.manual_seed(seed)
        yield


class ForwardBranches(nn.Module):
    """A head's ``forward_branches`` as a module's forward, so that ``torch.func.functional_call`` can run it on
    other weights (built per call: kept as an attribute it would register the head's parameters twice)."""

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: Tensor, mask: Tensor, walked: list[Propagated]) -> list[HeadOutput]:
        return self.head.forward_branches(x, mask, walked)  # type: ignore[attr-defined]


def branch_parameter_names(head: Head, entries: tuple[str, ...]) -> list[str]:
    """The names of ``head``'s parameters that the propagated branches get their own copies of: those equal to, or
    under (``name.``), an entry of ``entries`` (``rskp.propagation.branch_parameters``). ``ConfigError`` names an
    entry that matches no parameter, and the head's parameters."""
    names = [name for name, _ in head.named_parameters()]
    chosen = []
    for entry in entries:
        matched = [n for n in names if n == entry or n.startswith(entry + ".")]
        if not matched:
            raise ConfigError(f"rskp.propagation.branch_parameters: {entry!r} names no parameter of "
                              f"{type(head).__name__}; its parameters are {', '.join(names) or '(none)'}")
        chosen += [n for n in matched if n not in chosen]
    return chosen


def fuse_outputs(head: Head, outputs: list[HeadOutput], weights: list[float],
                 traits: HeadTraits | None = None) -> HeadOutput:
    """Test-time fusion of branch outputs, the one place branches are fused: the head's own ``fuse`` if it has
    one, else a weighted sum of video scores, CAS and TCAM logits with the first branch's attention; either way
    ``score_cas`` is the weighted sum of the branches' (the first branch's where another has none, None where the
    first has none). ``traits``: the head's, where the caller resolved them already."""
    if len(outputs) == 1:
        return outputs[0]
    traits = head_traits(head) if traits is None else traits
    first = outputs[0]
    if traits.fuse:
        fused = head.fuse(outputs, weights)  # type: ignore[attr-defined]
    else:
        fused = HeadOutput(
            video_scores=_weighted_sum([o.video_scores for o in outputs], weights),
            tcam=_weighted_sum([o.tcam for o in outputs], weights),
            attention=first.attention,
            cas=_weighted_sum([o.cas for o in outputs], weights),
            extras=first.extras,
        )
    signals = [o.score_cas for o in outputs]
    score_cas = first.score_cas
    if score_cas is not None and all(x is not None for x in signals):
        score_cas = _weighted_sum(signals, weights)  # type: ignore[arg-type]
    return fused._replace(score_cas=score_cas)
