"""predict -> evaluate on the data a run trained on reproduces the run's own evaluation (W-TALC and folder layouts)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rskp_plugin import cli

TINY = [
    "--set", "head.options={embed_dim: 16}", "--set", "optimizer.lr=1e-2", "--set", "optimizer.accumulation=4",
    "--set", "optimizer.batch_size=4", "--set", "rskp.memory.warmup_epochs=0", "--set", "train.eval_interval=1",
    "--set", "train.eval_batch_size=4", "--selection", "last", "--no-progress",
]
SYNTH = ["--feature-dim", "16", "--num-train", "12", "--num-test", "8", "--difficulty", "0"]


def json_out(capsys, *argv: str) -> dict:
    assert cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("layout", ["wtalc", "folders"])
def test_predict_then_evaluate_reproduces_the_runs_best_row(tmp_path, capsys, layout) -> None:
    data, run, preds = tmp_path / "data", tmp_path / "run", tmp_path / "preds.json"
    assert cli.main(["make-synthetic", "--out", str(data), "--layout", layout, *SYNTH]) == 0
    assert cli.main(["train", "--config", "quick", "--head", "wum", "--data", layout, "--data-root", str(data),
                     "--epochs", "3", "--output-dir", str(run), *TINY]) == 0
    best = json.loads((run / "results.json").read_text())["best"]["test"]
    assert best["avg_map_percent"] > 0.1  # a real number to reproduce, not 0 = 0

    if layout == "wtalc":  # the dataset's file, videos named from its videoname.npy; its test subset only
        features = [str(data / "Thumos14reduced-I3D-JOINTFeatures.npy"), "--subset", "test"]
    else:  # the test split's folder: rgb/ and flow/ concatenated per video
        features = [str(data / "features" / "test")]
    assert cli.main(["predict", "--checkpoint", str(run / "best.pt"), "--features", *features,
                     "--out", str(preds)]) == 0
    capsys.readouterr()
    names = set(json.loads(preds.read_text())["results"])
    assert len(names) == 8 and all(n.startswith("synthetic_test_") for n in names), sorted(names)[:3]

    by_data = json_out(capsys, "evaluate", "--data", layout, "--data-root", str(data), "--predictions", str(preds),
                       "--json")
    by_config = json_out(capsys, "evaluate", "--config", str(run / "config.yaml"), "--predictions", str(preds),
                         "--json")
    for out in (by_data, by_config):
        assert out["avg_map_percent"] == pytest.approx(best["avg_map_percent"], abs=1e-6)
        np.testing.assert_allclose(out["map_percent"], best["map_percent"], rtol=0, atol=1e-6)
        assert out["per_class_ap_percent"].keys() == best["per_class_ap_percent"].keys()
        for name, ap in best["per_class_ap_percent"].items():
            np.testing.assert_allclose(out["per_class_ap_percent"][name], ap, rtol=0, atol=1e-6)


def test_predict_names_wtalc_videos_without_annotations_by_index(tmp_path, capsys) -> None:
    from rskp_plugin.engine.predict import read_feature_files

    features = np.empty(2, dtype=object)
    features[0], features[1] = np.zeros((3, 4), np.float32), np.ones((5, 4), np.float32)
    np.save(tmp_path / "Mine-I3D-JOINTFeatures.npy", features, allow_pickle=True)
    videos = read_feature_files([tmp_path / "Mine-I3D-JOINTFeatures.npy"], feature_dim=4)
    assert [n for n, _ in videos] == ["Mine-I3D-JOINTFeatures_0000", "Mine-I3D-JOINTFeatures_0001"]
    with pytest.raises(Exception, match="needs the W-TALC annotations"):
        read_feature_files([tmp_path / "Mine-I3D-JOINTFeatures.npy"], feature_dim=4, subset="test")


def test_make_synthetic_writes_what_a_config_trains_on(tmp_path, capsys) -> None:
    from rskp_plugin.data import load_wtalc
    from rskp_plugin.engine import build_datasets, load_experiment

    overrides = ["data.num_train=6", "data.num_test=4", "data.seed=3"]
    config = tmp_path / "exp.yaml"
    config.write_text("data:\n  feature_dim: 16\n  num_train: 6\n  num_test: 4\n  seed: 3\n  difficulty: 0.5\n")
    assert cli.main(["make-synthetic", "--config", str(config), "--out", str(tmp_path / "d")]) == 0
    expected = build_datasets(load_experiment(config))
    written = load_wtalc(tmp_path / "d", "Thumos14reduced", "test")
    assert [v.name for v in written.videos] == [v.name for v in expected.test.videos]
    assert all(np.array_equal(a.features, b.features) for a, b in zip(written.videos, expected.test.videos))
    assert overrides  # the same values as the YAML above, kept for the reader
