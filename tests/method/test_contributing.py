"""CONTRIBUTING.md's recipe for a propagation variant, run as written: the one code block registers a walk, the
config takes its name, and an RSKP model trains a step with it (every head, a padded batch)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from _toy import labelled_batch

from rskp_plugin import RSKPConfig, RSKPWrapper, create_head
from rskp_plugin.config_io import apply_overrides
from rskp_plugin.method import registry
from rskp_plugin.method.propagation import birw_walks

CONTRIBUTING = Path(__file__).resolve().parents[2] / "CONTRIBUTING.md"


def _recipe() -> str:
    """The python block under the heading "Recipe: a propagation variant"."""
    text = CONTRIBUTING.read_text(encoding="utf-8")
    section = text[text.index("#### Recipe: a propagation variant"):]
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
