"""Experiment files: ``base:`` inheritance, and the packaged configs' head options for heads that do not take them."""

from __future__ import annotations

import warnings

import attrs
import pytest
import yaml
from _toy import ToyHead
from torch import nn

from rskp_plugin import plugins
from rskp_plugin.engine import config_to_yaml, load_experiment
from rskp_plugin.engine.build import build_model
from rskp_plugin.engine.config import PackagedOptionNote
from rskp_plugin.errors import ConfigError
from rskp_plugin.hookspecs import hookimpl
from rskp_plugin.protocols import HeadSpec


class NoEmbedDimHead(ToyHead):
    """A third-party head whose factory has no ``embed_dim`` keyword (its width is its own business)."""

    def __init__(self, *, num_classes: int = 3, feature_dim: int = 8, hidden: int = 4) -> None:
        super().__init__(num_classes=num_classes, feature_dim=feature_dim, embed_dim=hidden)


class _Plugin:
    @hookimpl
    def register_heads(self, register):
        register(HeadSpec(name="narrow_toy", factory=NoEmbedDimHead, summary="toy head without embed_dim"))


@pytest.fixture
def pm():
    manager = plugins.make_plugin_manager(load_entrypoints=True)
    manager.register(_Plugin(), name="narrow-plugin")
    plugins.refresh(manager)
    yield manager
    plugins.refresh()


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_three_line_yaml_is_quick_with_my_data_and_head(tmp_path) -> None:
    mine = _write(tmp_path / "mine.yaml", "base: quick\nhead: {name: wum}\ndata: {num_train: 20, num_test: 10}\n")
    config, quick = load_experiment(mine), load_experiment("quick", values={"head.name": "wum"})
    assert config.head.name == "wum" and (config.data.num_train, config.data.num_test) == (20, 10)
    # everything else is quick's: mappings merged key by key
    assert config.head.options == quick.head.options == {"embed_dim": 128}
    assert config.data.feature_dim == 128 and config.optimizer.lr == quick.optimizer.lr
    assert config.train == attrs.evolve(quick.train, output_dir=config.train.output_dir)
    assert config.rskp == quick.rskp
    assert config.train.output_dir == "runs/mine-wum"  # named after the user's file
    recorded = yaml.safe_load(config_to_yaml(config))
    assert "base" not in recorded and recorded["data"]["feature_dim"] == 128  # resolved values, no base
    again = _write(tmp_path / "again.yaml", config_to_yaml(config))
    assert load_experiment(again) == config


def test_chains_lists_replace_and_relative_paths(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "grand.yaml", "train: {epochs: 7, tiou: [0.1, 0.3, 0.5], seed: 4}\n"
                                             "data: {num_train: 30}\n")
    _write(tmp_path / "parent.yaml", "base: sub/grand.yaml\ntrain: {epochs: 9}\n")
    child = _write(tmp_path / "child.yaml", "base: parent.yaml\ntrain: {tiou: [0.5]}\n")
    config = load_experiment(child, ["train.seed=5"], values={"data.num_test": 11})
    assert (config.train.epochs, config.train.tiou, config.train.seed) == (9, (0.5,), 5)  # the list replaced
    assert (config.data.num_train, config.data.num_test) == (30, 11)


def test_cycle_names_the_files(tmp_path) -> None:
    _write(tmp_path / "a.yaml", "base: b.yaml\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_experiment(tmp_path / "a.yaml")
    _write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_experiment(tmp_path / "self.yaml")


@pytest.mark.parametrize("base, match", [
    ("quikc", r'base "quikc" is neither a file .* Did you mean "quick"\? Packaged configs: .*quick'),
    (3, r'"base" must name a packaged config'),
])
def test_unknown_base_suggests_packaged_configs(tmp_path, base, match) -> None:
    path = _write(tmp_path / "x.yaml", yaml.safe_dump({"base": base}))
    with pytest.raises(ConfigError, match=match):
        load_experiment(path)


def test_errors_in_a_base_name_that_file(tmp_path) -> None:
    _write(tmp_path / "bad.yaml", "train: {epoks: 3}\n")
    path = _write(tmp_path / "top.yaml", "base: bad.yaml\n")
    with pytest.raises(ConfigError, match=r'Unknown config key "train.epoks".*Did you mean "epochs"'):
        load_experiment(path)


def test_quick_options_a_head_does_not_take_are_left_out_with_a_note(pm) -> None:
    with pytest.warns(PackagedOptionNote, match=r"'narrow_toy' takes no embed_dim: head.options.embed_dim of the "
                                                r"packaged config quick left out"):
        config = load_experiment("quick", values={"head.name": "narrow_toy"})
    assert config.head.options == {}
    model = build_model(config, num_classes=3, feature_dim=128)
    assert isinstance(model, nn.Module)
    with warnings.catch_warnings():  # a head that takes it keeps it, with no note
        warnings.simplefilter("error")
        assert load_experiment("quick", values={"head.name": "facnet"}).head.options == {"embed_dim": 128}


def test_through_a_base_too_and_the_users_own_options_still_error(pm, tmp_path) -> None:
    mine = _write(tmp_path / "mine.yaml", "base: quick\nhead: {name: narrow_toy, options: {hidden: 6}}\n")
    with pytest.warns(PackagedOptionNote):
        config = load_experiment(mine)
    assert config.head.options == {"hidden": 6}
    build_model(config, num_classes=3, feature_dim=128)
    # the user's file sets embed_dim: an error naming it
    explicit = _write(tmp_path / "explicit.yaml", "base: quick\nhead: {name: narrow_toy, options: {embed_dim: 64}}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = load_experiment(explicit)
    with pytest.raises(ConfigError, match="The head takes no 'embed_dim': remove head.options.embed_dim"):
        build_model(config, num_classes=3, feature_dim=128)
    # --set gives it: an error too
    with pytest.warns(PackagedOptionNote):
        config = load_experiment("quick", ["head.options.embed_dim=32"], values={"head.name": "narrow_toy"})
    assert config.head.options == {"embed_dim": 32}
    with pytest.raises(ConfigError, match="The head takes no 'embed_dim': remove head.options.embed_dim"):
        build_model(config, num_classes=3, feature_dim=128)


def test_rskp_train_prints_the_note_as_one_plain_line(pm, capsys) -> None:
    from rskp_plugin.commands import config_notes

    def twice():
        load_experiment("quick", values={"head.name": "narrow_toy"})  # as --epochs does before the real load
        return load_experiment("quick", values={"head.name": "narrow_toy"})

    assert config_notes(twice).head.options == {}
    err = capsys.readouterr().err
    assert err.count("note: head 'narrow_toy' takes no embed_dim") == 1 and "Warning" not in err


def test_rskp_bench_prints_the_note_as_one_plain_line(pm, capsys) -> None:
    from rskp_plugin.bench import build_parser, load_recipe

    args = build_parser().parse_args(["--head", "narrow_toy", "--epochs", "4"])
    assert load_recipe(args, "narrow_toy").head.options == {}
    err = capsys.readouterr().err
    assert err.count("note: head 'narrow_toy' takes no embed_dim") == 1 and "Warning" not in err


def test_the_readme_example_loads(pm, tmp_path) -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if b.startswith("base: quick"))
    assert len(block.strip().splitlines()) == 3
    mine = _write(tmp_path / "mine.yaml", block.replace("mymodel", "narrow_toy"))
    with pytest.warns(PackagedOptionNote):
        config = load_experiment(mine)
    assert (config.head.name, config.data.source, config.data.root) == ("narrow_toy", "wtalc", "/data/thumos14")
    assert config.train.epochs == 30 and config.train.output_dir == "runs/mine-narrow_toy"
