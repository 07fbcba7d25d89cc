"""``rskp calibrate``: chooses on held-out training videos only, writes a recipe that ``rskp train`` consumes."""

from __future__ import annotations

import pytest
from _toy import ToyHead

from rskp_plugin import calibrate as cal
from rskp_plugin import cli, create_head
from rskp_plugin.errors import ConfigError
from rskp_plugin.recipes import Recipe, read_recipe

TINY = ["--set", "head.options.embed_dim=8", "--set", "train.eval_interval=1", "--set", "optimizer.accumulation=4",
        "--set", "optimizer.batch_size=4", "--set", "optimizer.lr=1e-2", "--set", "train.eval_batch_size=8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A folders-layout set whose test split cannot be read (every test feature file is garbage), and a clean
    copy of it."""
    root = tmp_path_factory.mktemp("calib")
    args = ["--layout", "folders", "--feature-dim", "16", "--num-train", "24", "--num-test", "4"]
    assert cli.main(["make-synthetic", "--out", str(root / "clean"), *args]) == 0
    assert cli.main(["make-synthetic", "--out", str(root / "garbage"), *args]) == 0
    files = list((root / "garbage" / "features" / "test").rglob("*.npy"))
    assert files
    for path in files:
        path.write_bytes(b"not a numpy file")
    return root


def test_calibrate_never_reads_the_test_split_and_its_recipe_trains(data, tmp_path, capsys) -> None:
    out = tmp_path / "facnet.yaml"
    assert cli.main(["calibrate", "--head", "facnet", "--data", "folders", "--data-root", str(data / "garbage"),
                     "--epochs", "2", "--seeds", "2", "--output", str(out), "--no-progress", *TINY]) == 0
    recipe = read_recipe(out)
    ev = recipe.evidence
    assert recipe.head == "facnet" and ev["chosen"] in [r["name"] for r in ev["candidates"]]
    names = [r["name"] for r in ev["candidates"]]
    assert names[:5] == ["head alone", "defaults", "own copies", "no distillation", "tau 0.2"]
    assert ev["defaults"]["losses.distillation_temperature"] == 1.0
    assert ev["heldout_videos"] == 6 and ev["training_videos"] == 18 and ev["seeds"] == [0, 1]
    own = next(r for r in ev["candidates"] if r["name"] == "own copies")
    assert own["overrides"] == {"propagation.branch_parameters": ["foreground"]}
    for row in ev["candidates"]:  # the paired differences are what the rows say
        alone = next(r for r in ev["candidates"] if r["name"] == "head alone")["heldout_avg"]
        assert row["diff_to_alone"] == pytest.approx([a - b for a, b in zip(row["heldout_avg"], alone)], abs=0.02)
    assert "held-out AVG mAP" in capsys.readouterr().out
    assert cli.main(["calibrate", "--head", "facnet", "--output", str(out)]) == 2  # never overwritten
    assert "exists; pass another --output" in capsys.readouterr().err
    run = tmp_path / "run"
    assert cli.main(["train", "--head", "facnet", "--config", "quick", "--data", "folders", "--data-root",
                     str(data / "clean"), "--epochs", "1", "--head-recipe", str(out), "--output-dir", str(run),
                     "--no-progress", *TINY]) == 0
    import yaml

    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["head"]["recipe"] == str(out)
    branch = recipe.values.get("propagation.branch_parameters", [])
    assert recorded["rskp"]["propagation"]["branch_parameters"] == branch


def test_a_wrong_head_recipe_file_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "stpn.yaml"
    path.write_text("head: stpn\nrskp: {teacher.distill: false}\n")
    assert cli.main(["train", "--head", "facnet", "--head-recipe", str(path), "--output-dir", str(tmp_path)]) == 2
    assert "derived for head 'stpn', not 'facnet'" in capsys.readouterr().err


def test_attention_like_parameters_are_those_neither_embed_nor_classify_uses() -> None:
    assert cal.attention_like_parameters(create_head("facnet", num_classes=3, feature_dim=8, embed_dim=8), 8) == (
        "foreground",)
    assert cal.attention_like_parameters(create_head("stpn", num_classes=3, feature_dim=8, embed_dim=8), 8) == (
        "attention",)
    assert cal.attention_like_parameters(ToyHead(), 8) == ("attend",)  # the toy head's attention layer


def _row(name: str, mean: float, diff: float) -> dict:
    return {"name": name, "overrides": {}, "mean": mean, "diff_mean": diff}


def test_choose_keeps_the_defaults_unless_a_candidate_beats_them_by_min_gain() -> None:
    rows = [_row("head alone", 50, 0), _row("defaults", 52, 2), _row("own copies", 52.4, 2.4), _row("tau 1", 51, 1)]
    assert cal.choose(rows, min_gain=0.5) == "defaults"
    assert cal.choose(rows, min_gain=0.3) == "own copies"
    rows.append(_row("no distillation", 55, 5))
    assert cal.choose(rows, min_gain=0.5) == "no distillation"
    losing = [_row("head alone", 50, 0), _row("defaults", 48, -2), _row("tau 1", 49, -1)]
    assert cal.choose(losing, min_gain=0.5) == "tau 1"  # the best RSKP candidate; the table shows it loses


def test_the_second_round_adds_each_other_change_to_the_best_one() -> None:
    single = {"defaults": {}, "own copies": {"propagation.branch_parameters": ["a"]},
              "no distillation": {"teacher.distill": False}, "tau 1": {"losses.distillation_temperature": 1.0}}
    gains = {"head alone": -3, "defaults": 0, "own copies": -14, "no distillation": 1.0, "tau 1": 0.5}
    # own copies lost beside the distillation, yet is tried beside its removal; tau is moot without distillation
    assert cal.second_round(single, gains) == {"no distillation + own copies": {
        "teacher.distill": False, "propagation.branch_parameters": ["a"]}}
    assert cal.second_round(single, {**gains, "no distillation": -1, "tau 1": -1}) == {}  # nothing beats defaults
    best_copies = cal.second_round(single, {**gains, "own copies": 2.0})
    assert list(best_copies) == ["own copies + no distillation", "own copies + tau 1"]


def test_reuse_takes_the_runs_of_an_earlier_calibration(tmp_path) -> None:
    rows = [{"name": "head alone", "overrides": {}, "heldout_avg": [40.0, 41.0], "epochs": [30, 25]},
            {"name": "tau 1", "overrides": {"losses.distillation_temperature": 1.0}, "heldout_avg": [42.0, 43.0],
             "epochs": [30, 30]}]
    earlier = Recipe(values={}, head="facnet", evidence={"data": "synthetic", "epochs": 30, "seeds": [0, 1],
                                                          "candidates": rows}, source="old.yaml")
    got = cal.reusable(earlier, [1], 30, "synthetic")
    assert got == {("head alone", 1): {"heldout_avg": 41.0, "epoch": 25, "seconds": 0.0, "overrides": {}},
                   ("tau 1", 1): {"heldout_avg": 43.0, "epoch": 30, "seconds": 0.0,
                                  "overrides": {"losses.distillation_temperature": 1.0}}}
    with pytest.raises(ConfigError, match="same data and schedule"):
        cal.reusable(earlier, [0], 20, "synthetic")


def test_combine_chooses_by_the_mean_over_data_sets() -> None:
    def recipe(diffs: dict) -> Recipe:
        rows = [{"name": n, "overrides": {"teacher.distill": False} if n == "no distillation" else {},
                 "diff_mean": d, "mean": 50 + d} for n, d in diffs.items()]
        return Recipe(values={}, head="facnet", evidence={"candidates": rows, "base": {},
                                                          "defaults": cal.grid_defaults()}, source="x")

    a = recipe({"head alone": 0, "defaults": 1.0, "no distillation": 3.0})
    b = recipe({"head alone": 0, "defaults": 2.0, "no distillation": 0.5})
    chosen, overrides, rows = cal.combine([a, b], min_gain=0.5)
    assert (chosen, overrides) == ("defaults", {})  # mean 1.75 vs 1.5: not 0.5 better
    assert [r["diff_per_set"] for r in rows if r["name"] == "defaults"] == [[1.0, 2.0]]
    b = recipe({"head alone": 0, "defaults": 2.0, "no distillation": 2.5})
    assert cal.combine([a, b], min_gain=0.5)[:2] == ("no distillation", {"teacher.distill": False})  # 2.75 vs 1.5
    # a pair is one candidate whatever order each set's second round named it in
    pair = {"teacher.distill": False, "memory.enabled": False}
    c = Recipe(values={}, head="facnet", source="c", evidence={**a.evidence, "candidates": a.evidence["candidates"] + [
        {"name": "no distillation + no memory", "overrides": pair, "diff_mean": 4.0, "mean": 54.0}]})
    d = Recipe(values={}, head="facnet", source="d", evidence={**b.evidence, "candidates": b.evidence["candidates"] + [
        {"name": "no memory + no distillation", "overrides": dict(reversed(list(pair.items()))), "diff_mean": 3.0,
         "mean": 53.0}]})
    chosen, overrides, rows = cal.combine([c, d], min_gain=0.5)
    assert (chosen, overrides) == ("no distillation + no memory", pair)
    assert [r["diff_per_set"] for r in rows if r["name"] == chosen] == [[4.0, 3.0]]
    with pytest.raises(ConfigError, match="different heads"):
        cal.combine([a, Recipe(values={}, head="stpn", evidence=a.evidence)], min_gain=0.5)
    with pytest.raises(ConfigError, match="does not record the defaults"):
        cal.combine([a, Recipe(values={}, head="facnet", evidence={"candidates": []}, source="old.yaml")], 0.5)


def test_a_recipe_keeps_what_was_measured_when_a_default_changes() -> None:
    calibrated = {**cal.grid_defaults(), "losses.distillation_temperature": 0.2}  # measured under another default
    assert cal.recipe_values({}, {}, calibrated) == {"losses.distillation_temperature": 0.2}
    assert cal.recipe_values({}, {"losses.distillation_temperature": 1.0}, calibrated) == {}
    # without distillation the temperature is moot and left out
    assert cal.recipe_values({"losses.attention_normalization": 0}, {"teacher.distill": False}, calibrated) == {
        "losses.attention_normalization": 0, "teacher.distill": False}
