"""test_head_contract: every built-in head passes the conformance kit, and the kit catches broken heads."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import rskp_heads.bm
import rskp_heads.facnet
import rskp_heads.stpn
import rskp_heads.wum
from rskp_plugin import HeadOutput
from rskp_plugin.functional import masked_mean
from rskp_plugin.plugins import head_specs, make_plugin_manager
from rskp_plugin.testing import CHECKS, HeadCheckError, check_head

BUILT_IN = (rskp_heads.bm, rskp_heads.facnet, rskp_heads.stpn, rskp_heads.wum)


@pytest.fixture(scope="module")
def specs():
    pm = make_plugin_manager(load_entrypoints=False)
    for module in BUILT_IN:
        pm.register(module)
    return head_specs(pm)


@pytest.mark.parametrize("name", ["bm", "facnet", "stpn", "wum"])
def test_head_contract(specs, name):
    passed = check_head(functools.partial(specs[name].factory, embed_dim=16))
    assert passed == list(CHECKS)


def test_bm_with_every_option_passes(specs):
    check_head(functools.partial(specs["bm"].factory, embed_dim=16, cluster_weight=0.3, sparsity_weight=1e-3,
                                 pooling="mean", cas_mode="softmax"))


def test_stpn_sum_pooling_passes(specs):
    check_head(functools.partial(specs["stpn"].factory, embed_dim=16, pooling="sum"))


# -------------------------------------------------------------------------------- broken heads the kit must catch
class GoodHead(nn.Module):
    """A minimal correct head; the broken variants below each break one property."""

    def __init__(self, *, num_classes: int = 3, feature_dim: int = 16, embed_dim: int = 8) -> None:
        super().__init__()
        self.num_classes, self.embed_dim = num_classes, embed_dim
        self.embedding = nn.Linear(feature_dim, embed_dim)
        self.classifier = nn.Linear(embed_dim, num_classes)

    def embed(self, features, mask):
        return torch.relu(self.embedding(features)) * mask[..., None]

    def classify(self, x):
        return self.classifier(x)

    def pool(self, tcam, mask):
        return masked_mean(tcam, mask)

    def forward(self, x, mask):
        tcam = self.classify(x)
        video = torch.sigmoid(self.pool(tcam, mask))
        return HeadOutput(video, tcam, None, torch.sigmoid(tcam) * mask[..., None])

    def classification_loss(self, out, labels, mask):
        return nn.functional.binary_cross_entropy(out.video_scores, labels)

    def auxiliary_loss(self, out, labels, mask):
        return {}


class IgnoresMask(GoodHead):
    def pool(self, tcam, mask):
        return tcam.mean(dim=1)  # padded snippets take part


class TemporalClassify(GoodHead):
    def classify(self, x):
        return self.classifier(x.cumsum(dim=-2))  # uses the other snippets: not snippet-wise


class DeadParameter(GoodHead):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.unused = nn.Parameter(torch.zeros(2))


class VectorLoss(GoodHead):
    def classification_loss(self, out, labels, mask):
        return nn.functional.binary_cross_entropy(out.video_scores, labels, reduction="none")


class Unseeded(GoodHead):
    def forward(self, x, mask):
        out = super().forward(x, mask)
        noise = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(torch.seed()))
        return out._replace(video_scores=(out.video_scores * 0.5 + 0.5 * noise[:, None]))


class NoEmbedMask(GoodHead):
    def embed(self, features, mask):
        return torch.relu(self.embedding(features))


class MaskBlind(IgnoresMask):
    def embed(self, features, mask):
        return torch.relu(self.embedding(features))  # garbage in padded snippets reaches the pooled score


class WrongShape(GoodHead):
    def forward(self, x, mask):
        out = super().forward(x, mask)
        return out._replace(cas=out.cas[..., :-1])


class LostBuffer(GoodHead):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.temperature = torch.rand(())  # a plain attribute: not saved in state_dict, differs per instance

    def classify(self, x):
        return self.classifier(x) / (1 + self.temperature)


class StaleBranches(GoodHead):
    def forward_branches(self, x, mask, walked):
        return [self(x, mask) for _ in range(len(walked) + 1)]  # ignores the walks: every branch is the main one


def test_good_head_passes():
    assert check_head(GoodHead) == list(CHECKS)


@pytest.mark.parametrize(
    ("head", "failed"),
    [
        (MaskBlind, "mask_handling"),
        (IgnoresMask, "padded_batch_equals_single"),
        (TemporalClassify, "snippetwise_classify"),
        (DeadParameter, "finite_gradients"),
        (VectorLoss, "scalar_losses"),
        (Unseeded, "determinism"),
        (NoEmbedMask, "shapes_and_dtypes"),
        (WrongShape, "shapes_and_dtypes"),
        (LostBuffer, "state_dict_round_trip"),
        (StaleBranches, "factored_branches"),
    ],
)
def test_broken_head_fails_the_right_check(head, failed):
    with pytest.raises(HeadCheckError) as info:
        check_head(head)
    message = str(info.value)
    assert f"{failed} [B=3, T=9 (lengths [9, 5, 7]), D=16, C=3]" in message  # names the property and shapes
    with pytest.raises(HeadCheckError):
        check_head(head, checks=[failed])


def test_check_subset_and_unknown_names():
    assert check_head(GoodHead, checks=["structure", "determinism"]) == ["structure", "determinism"]
    with pytest.raises(ValueError, match="unknown checks"):
        check_head(GoodHead, checks=["telepathy"])


def test_check_head_leaves_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    check_head(GoodHead, checks=["determinism", "finite_gradients"])
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("name", ["bm", "facnet", "stpn", "wum"])
def test_padded_batch_equals_each_video_for_any_lengths(specs, name):
    """hypothesis: any batch of lengths (1 snippet included) gives each video's outputs and losses alone."""
    factory = functools.partial(specs[name].factory, embed_dim=8)

    @settings(max_examples=8, derandomize=True, deadline=None)
    @given(lengths=st.lists(st.integers(1, 12), min_size=1, max_size=4), seed=st.integers(0, 2**16))
    def run(lengths, seed):
        check_head(factory, lengths=lengths, seed=seed, feature_dim=6,
                   checks=["mask_handling", "padded_batch_equals_single"])

    run()


class BadScorer(GoodHead):
    def representative_scores(self, reps):
        return self.classify(reps)  # logits, not probabilities


class BadFuse(GoodHead):
    def fuse(self, outputs, weights):
        return outputs[0]._replace(video_scores=sum(o.video_scores for o in outputs))  # ignores the weights


@pytest.mark.parametrize("head", [BadScorer, BadFuse])
def test_optional_members_are_checked(head):
    with pytest.raises(HeadCheckError, match="optional_members"):
        check_head(head, checks=["optional_members"])


def test_check_head_restores_the_thread_count():
    threads = torch.get_num_threads()
    check_head(GoodHead, checks=["structure"])
    assert torch.get_num_threads() == threads


def test_heads_import_without_the_wrapper():
    """A head depends on the Head protocol only: importing the four modules loads no RSKP machinery."""
    import subprocess
    import sys

    code = (
        "import sys, rskp_heads.bm, rskp_heads.facnet, rskp_heads.stpn, rskp_heads.wum\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[-1] in "
        "('wrapper', 'summarizer', 'memory', 'propagation', 'engine') and m.startswith('rskp_plugin'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


class CrashesInPool(GoodHead):
    def pool(self, tcam, mask):
        return masked_mean(tcam, mask, dim=1)  # masked_mean(x, mask) takes no dim


def test_a_crash_names_the_line_that_raised():
    with pytest.raises(HeadCheckError) as info:
        check_head(CrashesInPool, checks=["shapes_and_dtypes"])
    message = str(info.value)
    assert "raised TypeError" in message and f"{__file__}:" in message
    assert "in pool: `return masked_mean(tcam, mask, dim=1)" in message
