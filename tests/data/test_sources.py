"""The data-source registry: one list that the config, the builders and every ``--data`` option share."""

from __future__ import annotations

import pytest

from rskp_plugin import bench, cli
from rskp_plugin.engine import DataConfig, load_experiment
from rskp_plugin.engine.build import build_datasets, load_split
from rskp_plugin.sources import DATA_SOURCES, data_source_names


def test_every_data_option_accepts_exactly_the_registered_sources() -> None:
    assert data_source_names() == ("synthetic", "wtalc", "folders")
    for name in data_source_names():
        assert DataConfig(source=name).source == name
        assert cli.build_parser().parse_args(["train", "--data", name]).data == name
        assert cli.build_parser().parse_args(["evaluate", "--data", name, "--predictions", "p.json"]).data == name
        assert cli.build_parser().parse_args(["bench", "--data", name]).data == name
        assert bench.build_parser().parse_args(["--data", name]).data == name
    for parse in (lambda: cli.build_parser().parse_args(["train", "--data", "nope"]),
                  lambda: bench.build_parser().parse_args(["--data", "nope"])):
        with pytest.raises(SystemExit):
            parse()


def test_the_builders_read_through_the_registry(monkeypatch) -> None:
    config = load_experiment(None, ["data.num_train=3", "data.num_test=2", "data.feature_dim=16"])
    calls = []
    real = DATA_SOURCES["synthetic"]

    def spy(data, root, splits):
        calls.append(tuple(splits))
        return real.load(data, root, splits)

    monkeypatch.setitem(DATA_SOURCES, "synthetic", real.__class__(real.name, spy, needs_root=False))
    datasets = build_datasets(config)
    test = load_split(config, "test")
    assert calls == [("train", "test"), ("test",)]
    # heldout selection (the default) keeps one of the three training videos out of training
    assert (len(datasets.train), len(datasets.heldout), len(datasets.test)) == (2, 1, 2)
    assert test.names == datasets.test.names
