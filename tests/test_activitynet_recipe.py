"""The ``activitynet13`` recipe and the ActivityNet1.3-shaped synthetic preset."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from rskp_plugin import cli
from rskp_plugin.config_io import apply_overrides
from rskp_plugin.data import make_synthetic
from rskp_plugin.data import synthetic_activitynet as anet
from rskp_plugin.data.synthetic import PRESETS
from rskp_plugin.engine import load_experiment
from rskp_plugin.engine.config import SYNTHETIC_PRESETS, packaged_configs
from rskp_plugin.errors import ConfigError, DataError


def test_recipe_holds_the_papers_activitynet_settings() -> None:
    assert "activitynet13" in packaged_configs()
    config = load_experiment("activitynet13")
    assert config.data.synthetic_preset == "activitynet13" and config.data.source == "synthetic"
    assert config.data.dataset_name == "ActivityNet1.3"
    assert config.optimizer.accumulation == config.optimizer.batch_size == 16  # mini-batch of 16 videos
    assert config.optimizer.lr == 5e-5 and config.train.epochs == 200 and config.rskp.memory.warmup_epochs == 100
    assert config.train.protocol == "activitynet"
    np.testing.assert_allclose(config.train.tiou, np.linspace(0.5, 0.95, 10))
    assert config.train.tiou[-1] == 0.95 and config.train.tiou[5] == 0.75  # exact decimals: Table 1's columns
    # real features keep every setting but the synthetic ones: the W-TALC ActivityNet subsets
    real = apply_overrides(config, ["data.source=wtalc", "data.root=/data"])
    assert real.optimizer == config.optimizer and real.train.tiou == config.train.tiou


def test_recipe_walks_the_foreground_over_every_heads_recipe() -> None:
    """The config's foreground walk sits above a head's recipe (a YAML layer), and a flag still overrides it."""
    for head in ("facnet", "stpn", "bm", "wum"):
        config = load_experiment("activitynet13", values={"head.name": head})
        assert config.rskp.summarizer.region == "foreground"
    facnet = load_experiment("activitynet13", values={"head.name": "facnet"})
    assert facnet.rskp.losses.distillation_temperature == 0.2  # FAC-Net's recipe still applies underneath
    assert load_experiment("quick", values={"head.name": "facnet"}).rskp.summarizer.region == "all"
    config = load_experiment("activitynet13", ["rskp.summarizer.region=all"], values={"head.name": "facnet"})
    assert config.rskp.summarizer.region == "all"


def test_presets_of_config_and_generator_agree() -> None:
    assert SYNTHETIC_PRESETS == tuple(PRESETS)
    with pytest.raises(ConfigError, match="synthetic_preset.*'activitynet13'.*got 'activitynet'"):
        apply_overrides(load_experiment(), ["data.synthetic_preset=activitynet"])
    with pytest.raises(DataError, match='unknown synthetic preset "anet"'):
        make_synthetic(preset="anet", num_train=1, num_test=1)


def test_thumos_draw_is_unchanged() -> None:
    """The THUMOS14-shaped set of a seed is the one the generator drew before the ActivityNet preset existed."""
    train, test = make_synthetic(seed=5, feature_dim=16, num_train=12, num_test=6)
    digest = hashlib.sha256()
    for ds in (train, test):
        for v in ds.videos:
            digest.update(f"{v.name} {v.duration!r} {np.asarray(v.segments).round(1).tolist()} "
                          f"{v.segment_labels.tolist()}".encode())
    assert digest.hexdigest() == "347cef5783d4143a9daee7dded227c09410e6ddcb7d9e804a141f739e992dd67"
    np.testing.assert_allclose([v.features.sum() for v in train.videos[:3]], [412.938, 981.921, 9121.393], rtol=1e-4)
    assert [v.num_snippets for v in test.videos] == [906, 187, 1723, 378, 361, 223]


def test_preset_statistics_match_its_figures() -> None:
    """What the preset claims: 200 classes, one or two instances per video (1.537 on average, activity-net.org), a
    mean duration of 116.7 s (648 h over 19,994 videos) and instances covering half a video on average."""
    videos = anet.sample_activitynet_annotations(np.random.default_rng(0), 4000)
    counts = np.array([len(v["segments"]) for v in videos])
    assert set(counts.tolist()) == {1, 2}
    assert abs(counts.mean() - 15410 / 10024) < 0.03  # binomial sd of the mean: 0.008
    durations = np.array([v["duration"] for v in videos])
    assert abs(durations.mean() - 116.7) < 5 and durations.min() >= 10 and durations.max() <= 600  # se 1.2 s
    coverage = np.array([np.diff(v["segments"], axis=1).sum() / v["duration"] for v in videos])
    assert abs(coverage.mean() - anet.MEAN_COVERAGE) < 0.02 and anet.MEAN_COVERAGE == 0.5  # se 0.004
    lengths = np.concatenate([np.diff(v["segments"], axis=1)[:, 0] for v in videos])
    assert np.median(lengths) > 20  # long instances (THUMOS14's are a few seconds)
    classes = [v["classes"] for v in videos]
    assert all(len(c) == 1 for c in classes) and len({c[0] for c in classes}) == 200
    for v in videos:
        seg = v["segments"]
        assert (seg[:, 1] > seg[:, 0]).all() and seg.min() >= 0 and seg.max() <= v["duration"]
        assert len(seg) == 1 or seg[0, 1] <= seg[1, 0]  # two instances do not overlap
        assert (v["segment_labels"] == v["classes"][0]).all()


def test_preset_builds_datasets_of_its_shape() -> None:
    train, test = make_synthetic(seed=1, feature_dim=16, num_train=30, num_test=10, preset="activitynet13")
    assert (train.subset, test.subset) == ("training", "validation") and train.name == "synthetic-activitynet13"
    assert len(train.class_names) == 200 and train.class_names == test.class_names
    for video in train.videos + test.videos:
        assert video.features.shape == (int(np.ceil(video.duration * 25 / 16)), 16)
        assert np.isfinite(video.features).all() and (video.features >= 0).all()
        assert video.labels.sum() == 1 and video.labels[video.segment_labels[0]] == 1
    again, _ = make_synthetic(seed=1, feature_dim=16, num_train=30, num_test=10, preset="activitynet13")
    assert all(np.array_equal(a.features, b.features) for a, b in zip(train.videos, again.videos))


def test_recipe_runs_one_tiny_epoch(tmp_path) -> None:
    out = tmp_path / "r.json"
    code = cli.bench_main([
        "--recipe", "activitynet13", "--seeds", "1", "--epochs", "1", "--output", str(out), "--no-progress",
        "--set", "data.num_train=12", "--set", "data.num_test=6", "--set", "data.feature_dim=16",
        "--set", "head.options={embed_dim: 16}",
    ])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["tiou"] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert data["config"]["optimizer"]["accumulation"] == 16 and data["config"]["data"]["num_train"] == 12
    for row in data["rows"]:
        assert len(row["map_percent_mean"]) == 10
        assert np.isclose(row["avg_map_percent_mean"], np.mean(row["map_percent_mean"]))
