"""Config: defaults match the official code, YAML loading, dotted-path errors, overrides."""

import pytest

from rskp_plugin.config import RSKPConfig, apply_overrides, from_mapping, load_yaml
from rskp_plugin.errors import ConfigError


def test_defaults_are_the_official_numbers():
    c = RSKPConfig()
    assert (c.summarizer.num_representatives, c.summarizer.em_iters, c.summarizer.temperature) == (8, 2, 5.0)
    assert (c.memory.slots, c.walk_weight, c.walk_temperature) == (5, 0.5, 5.0)
    assert (c.losses.distillation, c.losses.distillation_after_warmup) == (1.0, 0.5)
    assert c.losses.distillation_temperature is None  # resolved per head: 0.2 (official) unless the head asks
    assert (c.losses.attention_normalization, c.losses.inter_classification) == (0.1, 0.5)
    assert (c.fusion.pseudo_label_intra, c.fusion.test_main) == (0.8, 0.6)


def test_yaml_with_non_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("walk_weight: 0.3\nsummarizer:\n  em_iters: 3\n  init: xavier\nlosses:\n  distillation: 1\n")
    c = load_yaml(RSKPConfig, path)
    assert c.walk_weight == 0.3 and c.summarizer.em_iters == 3 and c.summarizer.init == "xavier"
    assert c.losses.distillation == 1.0 and isinstance(c.losses.distillation, float)


@pytest.mark.parametrize(
    "data, match",
    [
        ({"sumarizer": {}}, r'"sumarizer".*Did you mean "summarizer"'),
        ({"summarizer": {"em_iter": 3}}, r'"summarizer.em_iter".*em_iters'),
        ({"walk_weight": 1.5}, "walk_weight"),
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
    c = apply_overrides(RSKPConfig(), ["summarizer.em_iters=4", "walk_weight=0.25"])
    assert c.summarizer.em_iters == 4 and c.walk_weight == 0.25
    with pytest.raises(ConfigError, match="summarizer.nope"):
        apply_overrides(RSKPConfig(), ["summarizer.nope=1"])
    with pytest.raises(ConfigError, match="walk_weight"):
        apply_overrides(RSKPConfig(), ["walk_weight=2"])
