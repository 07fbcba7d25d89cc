"""CONTRIBUTING.md's recipes for a propagation variant and a loss term, run as written: each code block registers
its part, the config takes its name, and an RSKP model trains a step with it (every head, a padded batch)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from _toy import labelled_batch

from rskp_plugin import RSKPConfig, RSKPWrapper, create_head
from rskp_plugin.config_io import apply_overrides
from rskp_plugin.errors import ConfigError
from rskp_plugin.method import registry
from rskp_plugin.method.propagation import birw_walks

CONTRIBUTING = Path(__file__).resolve().parents[2] / "CONTRIBUTING.md"


def _recipe(heading: str = "a propagation variant") -> str:
    """The python block under the heading "Recipe: <heading>"."""
    text = CONTRIBUTING.read_text(encoding="utf-8")
    section = text[text.index(f"#### Recipe: {heading}"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def registered():
    before = dict(registry.WALKS)
    namespace: dict = {}
    exec(compile(_recipe(), str(CONTRIBUTING), "exec"), namespace)  # noqa: S102 - the repository's own document
    yield namespace
    registry.WALKS.clear()
    registry.WALKS.update(before)


@pytest.mark.parametrize("head", ("facnet", "stpn", "bm", "wum"))
def test_the_recipe_adds_a_walk_that_trains(registered, head) -> None:
    config = apply_overrides(RSKPConfig(), ["propagation.method=half_weight", "memory.warmup_epochs=0"])
    torch.manual_seed(0)
    model = RSKPWrapper(create_head(head, num_classes=3, feature_dim=8, embed_dim=8, dropout=0.0), config).double()
    x, mask, labels = labelled_batch((9, 5, 7))
    model.start_epoch(0)
    out = model(x, mask, labels)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.summarizer.initial_means.grad is not None
    # the walk the model ran is the recipe's: BiRW at w / 2
    feats = model.embed(x, mask)
    sel, _ = model.select_representatives(feats, mask)
    got = model.walk.features(feats, [(sel.reps, None)], mask)[0].dense()
    want = birw_walks(feats, [(sel.reps, None)], 0.25, 5.0, mask)[0].dense()
    torch.testing.assert_close(got, want)


def test_a_name_is_registered_once(registered) -> None:
    with pytest.raises(ValueError, match="half_weight"):
        registry.register_walk("half_weight", registered["half_weight_walks"])


def test_the_config_knows_every_built_in_walk() -> None:
    from rskp_plugin.method.walks import SCORE_METHODS, VARIANTS

    assert registry.BUILT_IN_WALKS == ("birw", *VARIANTS, *SCORE_METHODS)


@pytest.fixture
def registered_term():
    before = dict(registry.LOSS_TERMS)
    namespace: dict = {}
    exec(compile(_recipe("a loss term"), str(CONTRIBUTING), "exec"), namespace)  # noqa: S102 - our own document
    yield namespace
    registry.LOSS_TERMS.clear()
    registry.LOSS_TERMS.update(before)


@pytest.mark.parametrize("head", ("facnet", "stpn", "bm", "wum"))
def test_the_recipe_adds_a_loss_term_that_trains(registered_term, head) -> None:
    base = apply_overrides(RSKPConfig(), ["memory.warmup_epochs=3", "losses.rampup_epochs=4"])
    config = apply_overrides(base, ["losses.terms.score_agreement=0.1"])
    outs = {}
    for name, cfg in (("without", base), ("with", config)):
        torch.manual_seed(0)
        model = RSKPWrapper(create_head(head, num_classes=3, feature_dim=8, embed_dim=8, dropout=0.0), cfg).double()
        x, mask, labels = labelled_batch((9, 5, 7))
        model.start_epoch(1)
        outs[name] = out = model(x, mask, labels)
        out.loss.backward()
        assert torch.isfinite(out.loss)
    without, with_term = outs["without"], outs["with"]
    assert list(with_term.losses) == [*without.losses, "score_agreement"]  # logged after RSKP's own terms
    for name, value in without.losses.items():
        torch.testing.assert_close(with_term.losses[name], value, rtol=0, atol=0)
    ramp = math.exp(-5.0 * (1 - 1 / 4) ** 2)
    want = ramp * 0.1 * ((with_term.main.video_scores - with_term.intra.video_scores) ** 2).mean()
    torch.testing.assert_close(with_term.losses["score_agreement"], want)


def test_a_loss_term_is_named_once_and_configured_by_its_registered_name(registered_term) -> None:
    with pytest.raises(ValueError, match="score_agreement"):
        registry.register_loss_term("score_agreement", registered_term["score_agreement"])
    with pytest.raises(ValueError, match="taken"):
        registry.register_loss_term("distill", registered_term["score_agreement"])
    with pytest.raises(ConfigError, match="unknown loss term 'score_agreemnt'"):
        apply_overrides(RSKPConfig(), ["losses.terms.score_agreemnt=0.1"])
    with pytest.raises(ConfigError, match="must be a number >= 0"):
        apply_overrides(RSKPConfig(), ["losses.terms.score_agreement=-1"])
    assert apply_overrides(RSKPConfig(), ["losses.terms={score_agreement: 1}"]).losses.terms == {"score_agreement": 1.0}
