"""Table 6 is a paired comparison: with every RSKP loss weight at 0 a wrapped head trains exactly as the head alone
(same initial weights, same dropout draws), so a per-seed gain measures RSKP, not a different random stream."""

import attrs
import pytest
import torch
from _tiny import tiny_dataset, train_epochs

from rskp_plugin.data import collate
from rskp_plugin.engine import Datasets, ExperimentConfig
from rskp_plugin.config_io import apply_overrides
from rskp_plugin.method.branches import separate_random_stream

ZERO = ["rskp.losses.intra_classification=0", "rskp.losses.inter_classification=0",
        "rskp.losses.distillation=0", "rskp.losses.distillation_after_warmup=0"]


@pytest.fixture(scope="module")
def datasets() -> Datasets:
    return Datasets(train=tiny_dataset(10, 0, "train"), test=tiny_dataset(4, 1, "test"),
                    heldout=tiny_dataset(4, 2, "heldout"), collate=collate)


def _config(head: str, rskp: bool, *overrides: str) -> ExperimentConfig:
    base = ExperimentConfig()  # the heads' own dropout stays on: it is what the pairing is about
    base = attrs.evolve(base, head=attrs.evolve(base.head, name=head, options={"embed_dim": 16}), rskp_enabled=rskp)
    return apply_overrides(base, ["optimizer.lr=1e-3", "optimizer.batch_size=5", "optimizer.accumulation=5",
                                  "train.output_dir=''", "train.device=cpu", "train.seed=7",
                                  "rskp.memory.warmup_epochs=0", *overrides])


def _head_weights(trainer) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in trainer.model.head.parameters()])


@pytest.mark.parametrize("head", ["facnet", "stpn", "bm", "wum"])
def test_rskp_with_zero_weights_trains_the_head_as_alone(head, datasets):
    alone = train_epochs(_config(head, False), datasets, 2)
    zero = train_epochs(_config(head, True, *ZERO), datasets, 2)  # memory filled after epoch 0: inter runs too
    assert zero.model.memory_ready
    a, z = _head_weights(alone), _head_weights(zero)
    initial = _head_weights(train_epochs(_config(head, False), datasets, 0))
    assert float((a - initial).abs().max()) > 1e-3  # training moved the weights: the equality below is not trivial
    torch.testing.assert_close(z, a, rtol=0, atol=1e-5)
    full = train_epochs(_config(head, True), datasets, 2)  # and RSKP's terms do change them
    assert float((_head_weights(full) - a).abs().max()) > 1e-4


def test_separate_stream_leaves_the_global_one_as_it_was():
    torch.manual_seed(3)
    expected = torch.rand(5)
    torch.manual_seed(3)
    with separate_random_stream(torch.device("cpu")):
        inside = torch.rand(5)
    assert torch.equal(torch.rand(5), expected)
    assert not torch.equal(inside, expected)  # the branches' draws are not the head's next draws
    torch.manual_seed(3)
    with separate_random_stream(torch.device("cpu")):
        again = torch.rand(5)
    assert torch.equal(again, inside)  # reproducible
