"""Config: defaults match the official code, YAML loading, dotted-path errors, overrides."""

import pytest

from rskp_plugin.config import RSKPConfig
from rskp_plugin.config_io import apply_overrides, from_mapping, load_yaml, set_values
from rskp_plugin.errors import ConfigError


def test_defaults_are_the_official_numbers():
    c = RSKPConfig()
    assert (c.summarizer.num_representatives, c.summarizer.em_iters, c.summarizer.temperature) == (8, 2, 5.0)
    assert (c.memory.slots, c.propagation.weight, c.propagation.temperature) == (5, 0.5, 5.0)
    assert (c.losses.distillation, c.losses.distillation_after_warmup) == (1.0, 0.5)
    assert c.losses.distillation_temperature == 1.0  # the paper's eq. 7; official() and a recipe may ask for 0.2
    assert RSKPConfig.official().losses.distillation_temperature == 0.2
    assert (c.losses.attention_normalization, c.losses.inter_classification) == (0.1, 0.5)
    assert (c.fusion.pseudo_label_intra, c.fusion.test_main) == (0.8, 0.6)


def test_yaml_with_non_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("propagation:\n  weight: 0.3\nsummarizer:\n  em_iters: 3\n  init: xavier\nlosses:\n  distillation: 1\n")
    c = load_yaml(RSKPConfig, path)
    assert c.propagation.weight == 0.3 and c.summarizer.em_iters == 3 and c.summarizer.init == "xavier"
    assert c.losses.distillation == 1.0 and isinstance(c.losses.distillation, float)


@pytest.mark.parametrize(
    "data, match",
    [
        ({"sumarizer": {}}, r'"sumarizer".*Did you mean "summarizer"'),
        ({"summarizer": {"em_iter": 3}}, r'"summarizer.em_iter".*em_iters'),
        ({"propagation": {"weight": 1.5}}, "propagation.weight"),
        ({"summarizer": {"em_iters": "two"}}, "summarizer.em_iters"),
        ({"memory": 3}, "memory must be a mapping"),
    ],
)
def test_errors_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        from_mapping(RSKPConfig, data)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(RSKPConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("summarizer: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(RSKPConfig, bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("memory:\n  slot: 3\n")
    with pytest.raises(ConfigError, match=r"typo.yaml.*memory.slot"):
        load_yaml(RSKPConfig, typo)


def test_overrides():
    c = apply_overrides(RSKPConfig(), ["summarizer.em_iters=4", "propagation.weight=0.25"])
    assert c.summarizer.em_iters == 4 and c.propagation.weight == 0.25
    with pytest.raises(ConfigError, match="summarizer.nope"):
        apply_overrides(RSKPConfig(), ["summarizer.nope=1"])
    with pytest.raises(ConfigError, match="propagation.weight"):
        apply_overrides(RSKPConfig(), ["propagation.weight=2"])


def test_a_config_file_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("factored_branches: true  # \u00e9t\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml.*not UTF-8 text.*save it as UTF-8"):
        load_yaml(RSKPConfig, path)
    with pytest.raises(ConfigError, match="Cannot read config file"):
        load_yaml(RSKPConfig, tmp_path)  # a folder


def test_an_override_without_a_value_is_an_error_not_none():
    with pytest.raises(ConfigError, match=r'"propagation.weight=" has no value'):
        apply_overrides(RSKPConfig(), ["propagation.weight="])
    with pytest.raises(ConfigError, match="not valid YAML"):
        apply_overrides(RSKPConfig(), ["propagation.weight=[1, 2"])


def test_typed_values_are_not_reparsed_as_yaml():
    from rskp_plugin.engine import ExperimentConfig

    c = set_values(ExperimentConfig(), {"data.root": "2024", "train.output_dir": "yes", "train.epochs": 3})
    assert (c.data.root, c.train.output_dir, c.train.epochs) == ("2024", "yes", 3)
    with pytest.raises(ConfigError, match='"train.epochs" must be int'):
        set_values(ExperimentConfig(), {"train.epochs": "3"})


def test_a_key_inside_a_mapping_value_is_set_alone():
    from rskp_plugin.engine import ExperimentConfig

    c = apply_overrides(ExperimentConfig(), ["head.options={embed_dim: 8, dropout: 0.1}", "head.options.embed_dim=16"])
    assert c.head.options == {"embed_dim": 16, "dropout": 0.1}
    with pytest.raises(ConfigError, match=r'"train.epochs.x" goes inside a value'):
        apply_overrides(ExperimentConfig(), ["train.epochs.x=1"])


def test_a_choice_error_reads_as_one_sentence():
    from rskp_plugin.engine import ExperimentConfig

    with pytest.raises(ConfigError) as info:
        apply_overrides(ExperimentConfig(), ["data.on_error=ignore"])
    assert str(info.value) == (
        "Invalid value for \"data.on_error\": 'on_error' must be in ('raise', 'skip') (got 'ignore')"
    )


@pytest.mark.parametrize("old, new", [("walk_weight", "propagation.weight"),
                                      ("walk_temperature", "propagation.temperature")])
def test_the_walks_old_keys_name_their_new_place(old, new, tmp_path):
    with pytest.raises(ConfigError, match=f'"{old}" has moved: did you mean "{new}"'):
        apply_overrides(RSKPConfig(), [f"{old}=0.3"])
    path = tmp_path / "old.yaml"
    path.write_text(f"{old}: 0.3\n")
    with pytest.raises(ConfigError, match=f'did you mean "{new}"'):
        load_yaml(RSKPConfig, path)
