"""The head contract's optional parts: declared once (HeadTraits + protocols), resolved once per model."""

import importlib
from pathlib import Path

import pytest
import torch
from _toy import ToyHead

from rskp_plugin import RSKPConfig, RSKPWrapper
from rskp_plugin.plugins import create_head
from rskp_plugin.protocols import LocalizationSettings
from rskp_plugin.method.model import HeadOnlyModel, Model
from rskp_plugin.protocols import (
    ForwardsBranches,
    FusesBranches,
    HeadOutput,
    ScoresRepresentatives,
    head_traits,
    missing_head_parts,
)
from rskp_plugin.method.branches import fuse_outputs
from rskp_heads.stpn import LOCALIZATION as STPN_LOCALIZATION, STPNHead

ROOT = Path(__file__).resolve().parents[2]


def test_toy_head_declares_nothing_optional() -> None:
    traits = head_traits(ToyHead())
    assert (traits.fuse, traits.forward_branches, traits.representative_scores) == (False, False, False)
    assert traits.localization is None and traits.settings == LocalizationSettings()


def test_stpn_traits_match_its_declarations() -> None:
    head = STPNHead(num_classes=3, feature_dim=8, embed_dim=6)
    traits = head_traits(head)
    assert isinstance(head, ForwardsBranches) and isinstance(head, ScoresRepresentatives)
    assert not isinstance(head, FusesBranches)
    assert (traits.forward_branches, traits.representative_scores, traits.fuse) == (True, True, False)
    assert traits.settings == STPN_LOCALIZATION


def test_each_built_in_head_declares_the_rules_kept_in_its_file() -> None:
    for name in ("bm", "facnet", "stpn", "wum"):
        module = importlib.import_module(f"rskp_heads.{name}")
        head = create_head(name, num_classes=3, feature_dim=8, embed_dim=6)
        assert isinstance(module.LOCALIZATION, LocalizationSettings)
        assert head_traits(head).settings is module.LOCALIZATION, name


def test_models_resolve_traits_once_and_share_the_model_interface() -> None:
    for model in (RSKPWrapper(ToyHead()), HeadOnlyModel(ToyHead())):
        assert isinstance(model, Model)
        assert model.traits == head_traits(model.head)
    assert HeadOnlyModel(ToyHead()).memory is None and HeadOnlyModel(ToyHead()).memory_ready is False


def test_missing_parts_are_named() -> None:
    class Half(torch.nn.Module):
        num_classes = 3

        def embed(self, features, mask):
            return features

    assert missing_head_parts(Half()) == (["embed_dim"], ["classify", "classification_loss", "auxiliary_loss"])
    with pytest.raises(TypeError, match="missing embed_dim, classify"):
        RSKPWrapper(Half())


def _output(seed: int, score: bool) -> HeadOutput:
    g = torch.Generator().manual_seed(seed)
    t = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return HeadOutput(t(2, 3), t(2, 5, 4), t(2, 5), t(2, 5, 3), {}, t(2, 5, 3) if score else None)


def test_fusion_fuses_the_scoring_signal_in_one_place() -> None:
    main, intra = _output(0, True), _output(1, True)
    fused = fuse_outputs(ToyHead(), [main, intra], [0.6, 0.4])
    assert torch.equal(fused.score_cas, 0.6 * main.score_cas + 0.4 * intra.score_cas)
    assert torch.equal(fused.cas, 0.6 * main.cas + 0.4 * intra.cas)
    # a branch without the signal: the first branch's; a first branch without it: none
    assert torch.equal(fuse_outputs(ToyHead(), [main, _output(1, False)], [0.6, 0.4]).score_cas, main.score_cas)
    assert fuse_outputs(ToyHead(), [_output(0, False), intra], [0.6, 0.4]).score_cas is None


def test_wrapper_output_carries_the_fused_scoring_signal() -> None:
    torch.manual_seed(0)
    head = STPNHead(num_classes=3, feature_dim=8, embed_dim=6)
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    official = RSKPWrapper(head, RSKPConfig.official()).double().eval()  # main fused with intra at test time
    assert official.config.fusion.use_intra_at_test
    out = official(x)
    w = official.config.fusion.test_main
    torch.testing.assert_close(out.score_cas, w * out.main.score_cas + (1 - w) * out.intra.score_cas)
    out = RSKPWrapper(head, RSKPConfig()).double().eval()(x)
    assert RSKPConfig().fusion.use_intra_at_test or torch.equal(out.score_cas, out.main.score_cas)
    head.float()
    alone = HeadOnlyModel(head).eval()(x.float()).score_cas
    assert torch.equal(alone, head(head.embed(x.float(), None), None).score_cas)


def test_built_in_heads_keep_their_rskp_settings_in_recipes_not_on_the_class():
    from rskp_plugin.plugins import create_head, head_specs
    from rskp_plugin.protocols import declared_recipe_attributes
    from rskp_plugin.recipes import read_recipe

    for name, spec in head_specs().items():
        if spec.distribution.startswith("rskp-plugin "):  # the built-in heads (installed: the recipe files ship)
            assert declared_recipe_attributes(create_head(name, num_classes=3, feature_dim=8)) == []
            path = ROOT / "heads" / "recipes" / f"{name}.yaml"
            assert dict(spec.recipe) == read_recipe(path).values, name


def test_a_head_declaring_rskp_settings_on_its_class_is_told_where_they_go():
    from rskp_plugin.testing import check_head

    class Declares(ToyHead):
        distillation_temperature = 1.0
        distilled = False

    with pytest.warns(UserWarning, match=r"distillation_temperature -> losses.distillation_temperature; distilled "
                                         r"-> teacher.distill"):
        RSKPWrapper(Declares())
    with pytest.raises(AssertionError, match="HeadSpec\\(recipe="):
        check_head(Declares)
