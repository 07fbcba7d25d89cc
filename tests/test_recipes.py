"""A head's RSKP settings as data: registered recipes, the layers configs resolve in, and what runs record."""

from __future__ import annotations

import pytest
import yaml
from _toy import ToyHead

from rskp_plugin import cli, plugins, recipes
from rskp_plugin.config import RSKPConfig
from rskp_plugin.engine import config_to_yaml, load_experiment
from rskp_plugin.errors import ConfigError
from rskp_plugin.hookspecs import hookimpl
from rskp_plugin.protocols import HeadSpec

TOY_RECIPE = {"losses.distillation_temperature": 1.0, "teacher.distill": False, "memory.slots": 3}


class _RecipePlugin:
    @hookimpl
    def register_heads(self, register):
        register(HeadSpec(name="recipe_toy", factory=ToyHead, summary="toy head with a recipe", recipe=TOY_RECIPE))
        register(HeadSpec(name="plain_toy", factory=ToyHead, summary="toy head that declares nothing"))


class _BadRecipePlugin:
    @hookimpl
    def register_heads(self, register):
        register(HeadSpec(name="bad_toy", factory=ToyHead, recipe={"losses.distilation": 1.0}))


@pytest.fixture
def pm():
    manager = plugins.make_plugin_manager(load_entrypoints=True)
    manager.register(_RecipePlugin(), name="recipe-plugin")
    plugins.refresh(manager)
    yield manager
    plugins.refresh()


def test_layers_resolve_defaults_then_recipe_then_yaml_then_flags_then_set(pm, tmp_path) -> None:
    config = load_experiment(None, values={"head.name": "recipe_toy"})
    assert config.rskp == recipes.apply(TOY_RECIPE)  # defaults < recipe
    assert config.rskp.losses.distillation_temperature == 1.0 and config.rskp.memory.slots == 3
    path = tmp_path / "exp.yaml"
    path.write_text("head: {name: recipe_toy}\nrskp: {losses: {distillation_temperature: 0.5}}\n")
    config = load_experiment(path)  # recipe < YAML: the YAML's key wins, the recipe's others stay
    assert (config.rskp.losses.distillation_temperature, config.rskp.teacher.distill) == (0.5, False)
    config = load_experiment(path, ["rskp.losses.distillation_temperature=0.3"], values={"rskp.memory.slots": 4})
    assert (config.rskp.losses.distillation_temperature, config.rskp.memory.slots) == (0.3, 4)  # < flags < --set
    # the head is read from every layer first: --set head.name brings that head's recipe
    config = load_experiment(None, ["head.name=recipe_toy"])
    assert config.rskp.teacher.distill is False
    # none: the defaults alone; a head that declares nothing gets them too
    assert load_experiment(None, ["head.name=recipe_toy", "head.recipe=none"]).rskp == RSKPConfig()
    assert load_experiment(None, ["head.name=plain_toy"]).rskp == RSKPConfig()


def test_a_recipe_file_replaces_the_registered_recipe_and_names_its_head(pm, tmp_path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(recipes.recipe_yaml(recipes.Recipe(values={"summarizer.num_representatives": 4},
                                                       head="recipe_toy")))
    config = load_experiment(None, ["head.name=recipe_toy", f"head.recipe={path}"])
    assert config.rskp == RSKPConfig().__class__(summarizer=RSKPConfig().summarizer.__class__(num_representatives=4))
    with pytest.raises(ConfigError, match="derived for head 'recipe_toy', not 'plain_toy'"):
        load_experiment(None, ["head.name=plain_toy", f"head.recipe={path}"])
    path.write_text("head: recipe_toy\nrskp: {losses.distilation: 1.0}\n")
    with pytest.raises(ConfigError, match=r"recipe file .*r.yaml.*Unknown config key \"losses.distilation\""):
        load_experiment(None, ["head.name=recipe_toy", f"head.recipe={path}"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(None, ["head.name=recipe_toy", f"head.recipe={tmp_path / 'missing.yaml'}"])


def test_run_config_records_every_rskp_value_so_a_rerun_ignores_later_recipe_changes(pm, tmp_path) -> None:
    config = load_experiment(None, ["head.name=recipe_toy", "train.epochs=3"])
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(config))
    recorded = yaml.safe_load(path.read_text())
    assert recorded["rskp"]["teacher"]["distill"] is False and "num_representatives" in recorded["rskp"]["summarizer"]
    TOY_RECIPE["teacher.distill"] = True  # the head's recipe changes on a later version
    try:
        again = load_experiment(path)
    finally:
        TOY_RECIPE["teacher.distill"] = False
    assert again == config


def test_a_bad_recipe_breaks_only_its_plugin(pm) -> None:
    pm.register(_BadRecipePlugin(), name="bad-recipe-plugin")
    assert "bad_toy" not in plugins.available_heads() and "recipe_toy" in plugins.available_heads()
    err = plugins.head_errors()["bad-recipe-plugin"]
    assert "registered a bad recipe" in str(err) and "losses.distilation" in str(err)


def test_heads_recipe_command_shows_values_and_sources(pm, capsys) -> None:
    assert cli.main(["heads", "--recipe", "recipe_toy"]) == 0
    out = capsys.readouterr().out
    assert "losses.distillation_temperature" in out and "the recipe_toy head's recipe" in out
    assert "summarizer.num_representatives" not in out  # only the keys the recipe sets, unless --all-keys
    assert cli.main(["heads", "--recipe", "recipe_toy", "--all-keys"]) == 0
    assert "summarizer.num_representatives" in capsys.readouterr().out
    assert cli.main(["heads", "--recipe", "plain_toy"]) == 0
    assert "trains with RSKP's defaults" in capsys.readouterr().out


def test_recipes_for_python_users(pm) -> None:
    config = recipes.for_head("recipe_toy")
    assert config.teacher.distill is False and recipes.for_head("plain_toy") == RSKPConfig()
    base = RSKPConfig.official()
    assert recipes.for_head("recipe_toy", base).teacher.source == base.teacher.source  # laid over a given config


def test_check_values_names_the_key_and_value() -> None:
    with pytest.raises(ConfigError, match="here: .*teacher.distill.*must be bool"):
        recipes.check_values({"teacher.distill": "no"}, source="here")
    assert recipes.check_values({"propagation.branch_parameters": ("a",)}, source="x") == {
        "propagation.branch_parameters": ["a"]}
