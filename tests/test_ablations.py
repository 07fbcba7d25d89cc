"""``rskp bench --ablation``: the table-row definitions, validation before training, shared rows, the JSON schema."""

from __future__ import annotations

import importlib.util
import json

import attrs
import numpy as np
import pytest

from rskp_plugin import ablations, bench, bench_runs, cli
from rskp_plugin.config_io import apply_overrides
from rskp_plugin.engine import ExperimentConfig
from rskp_plugin.errors import ConfigError

TINY = [
    "--set", "data.feature_dim=16", "--set", "data.num_train=8", "--set", "data.num_test=4",
    "--set", "head.options={embed_dim: 16}", "--set", "optimizer.lr=1e-3", "--set", "optimizer.accumulation=4",
    "--set", "train.eval_interval=1", "--no-progress",
]
#: The rows of Table 3 whose switches exist in every version of the config (no summarizer/propagation keys).
BASIC = ("baseline", "+representative snippets", "+pseudo-label supervision", "+memory bank")


def _key_exists(dotted: str, value: str) -> bool:
    try:
        apply_overrides(ExperimentConfig(), [f"{dotted}={value}"])
    except ConfigError:
        return False
    return True


def _needs(dotted: str, value: str, branch: str):
    """Skip (with the reason) a test that needs a switch another branch adds; it runs as soon as the key exists."""
    return pytest.mark.skipif(not _key_exists(dotted, value), reason=f"needs {dotted}={value} (branch {branch})")


def test_definitions_are_well_formed() -> None:
    assert ablations.ABLATION_NAMES == ("table3", "table4", "table5", "fig5", "supp")
    for table, rows in ablations.ABLATIONS.items():
        names = [row.name for row in rows]
        assert len(set(names)) == len(names), table
        for row in rows:
            assert isinstance(row.rskp, bool) and isinstance(row.overrides, tuple)
            assert all(o.count("=") == 1 and o.startswith("rskp.") for o in row.overrides), (table, row.name)
            if row.paper is not None:
                assert set(row.paper) == {"0.3", "0.5", "0.7", "AVG"}
                assert row.paper["0.3"] > row.paper["0.5"] > row.paper["0.7"]
                assert row.paper["0.7"] < row.paper["AVG"] < row.paper["0.3"]
            # the paper's ablations run without the memory bank unless the row is about it
            memory_rows = {("table3", "baseline"), ("table3", "+memory bank"), ("supp", "concat mu^a and mu^e")}
            assert (ablations.MEMORY_OFF in row.overrides) == ((table, row.name) not in memory_rows), row.name
    assert [r.rskp for r in ablations.ABLATIONS["table3"]] == [False, True, True, True, True]
    assert all(row.paper is None for row in ablations.ABLATIONS["fig5"])  # only plotted in the paper
    assert "fig5" in ablations.PAPER_NOTES and "not given in the text" in ablations.PAPER_NOTES["fig5"]
    assert {r.name for rows in ablations.ABLATIONS.values() for r in rows if r.requires} == {
        "agglomerative clustering", "spectral clustering"}
    # the paper's numbers as printed (Table 3 "+ memory bank" = the full model of Table 2; EM-Att = eq. 6)
    row = {r.name: r for r in ablations.ABLATIONS["table3"]}
    assert row["+memory bank"].paper == {"0.3": 55.8, "0.5": 38.2, "0.7": 12.5, "AVG": 45.1}
    assert ablations.ABLATIONS["table4"][-1].paper == ablations.ABLATIONS["table5"][1].paper == row[
        "+pseudo-label supervision"].paper


def test_shared_rows_have_equal_configs() -> None:
    """Table 3 "+pseudo-label supervision" = Table 4 "EM-Att" = Table 5 "eq. 6" = Fig. 5 "closed form": one config."""
    config = ExperimentConfig()
    same = [("table3", "+pseudo-label supervision"), ("table4", "EM-Att"), ("table5", "eq. 6 (BiRW)"),
            ("fig5", "closed form (eq. 6)")]
    rows = {(t, r.name): r for t, rows in ablations.ABLATIONS.items() for r in rows}
    configs = [ablations.row_config(config, rows[k], k[0]) for k in same]
    assert all(c == configs[0] for c in configs)
    assert configs[0].rskp_enabled and not configs[0].rskp.memory.enabled
    baseline = ablations.row_config(config, rows[("table3", "baseline")], "table3")
    assert not baseline.rskp_enabled and baseline.rskp == config.rskp


def test_bad_override_names_the_row(monkeypatch) -> None:
    bad = ablations.AblationRow("my row", True, ("rskp.losses.distillation=-1",))
    monkeypatch.setitem(ablations.ABLATIONS, "table5", (ablations.ABLATIONS["table5"][1], bad))
    expected = r'ablation table5, row "my row": Invalid value for "rskp.losses.distillation"'
    with pytest.raises(ConfigError, match=expected):
        bench_runs.plan_ablation(ExperimentConfig(), ["table5"])
    unknown = ablations.AblationRow("typo", True, ("rskp.memroy.enabled=false",))
    monkeypatch.setitem(ablations.ABLATIONS, "table5", (unknown,))
    with pytest.raises(ConfigError, match=r'row "typo": Unknown config key "rskp.memroy.enabled"'):
        bench_runs.plan_ablation(ExperimentConfig(), ["table5"])


def test_invalid_row_fails_before_any_training(monkeypatch, capsys) -> None:
    """A row that fails validation stops the command (exit 2, row named) before a single run starts."""
    trained = []
    monkeypatch.setattr(bench_runs, "train_run", lambda *a, **k: trained.append(1))
    rows = ablations.ABLATIONS["table3"][:2] + (ablations.AblationRow("late typo", True, ("rskp.propagation.weight=2",)),)
    monkeypatch.setitem(ablations.ABLATIONS, "table3", rows)
    assert cli.bench_main(["--ablation", "table3", "--seeds", "1", "--epochs", "1", *TINY]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert 'ablation table3, row "late typo"' in err and "propagation.weight" in err and not trained


def test_missing_optional_dependency_skips_with_reason(monkeypatch, tmp_path, capsys) -> None:
    rows = ablations.ABLATIONS["table3"][:1] + (
        ablations.AblationRow("needs a module", True, (ablations.MEMORY_OFF,), requires="no_such_module_rskp"),)
    monkeypatch.setitem(ablations.ABLATIONS, "table3", rows)
    plan = bench_runs.plan_ablation(ExperimentConfig(), ["table3"])
    assert [r.name for _, r, _ in plan.rows] == ["baseline"]
    assert [(t, r.name) for t, r, _ in plan.skipped] == [("table3", "needs a module")]
    assert "no_such_module_rskp" in plan.skipped[0][2] and "not installed" in plan.skipped[0][2]
    reason = ablations.missing_requirement(attrs.evolve(rows[1], requires="sklearn"))
    if importlib.util.find_spec("sklearn") is None:
        assert reason is not None and 'pip install "rskp-plugin[clustering]"' in reason
    else:
        assert reason is None
    out = tmp_path / "r.json"
    assert cli.bench_main(["--ablation", "table3", "--seeds", "1", "--epochs", "1", "--output", str(out), *TINY]) == 0
    captured = capsys.readouterr()
    assert 'skipped table3 row "needs a module": needs no_such_module_rskp' in " ".join(captured.err.split())
    data = json.loads(out.read_text())
    assert data["skipped"] == [{"variant": "needs a module", "reason": plan.skipped[0][2]}]
    assert [r["variant"] for r in data["rows"]] == ["baseline"]


def test_tiny_ablation_run_schema_and_shared_runs(monkeypatch, tmp_path, capsys) -> None:
    """Two tables whose rows share configs: each distinct config trains once per seed, both tables get its numbers."""
    table3 = tuple(r for r in ablations.ABLATIONS["table3"] if r.name in BASIC[:3])
    table5 = (ablations.ABLATIONS["table5"][1],)  # eq. 6 = table 3's "+pseudo-label supervision"
    monkeypatch.setitem(ablations.ABLATIONS, "table3", table3)
    monkeypatch.setitem(ablations.ABLATIONS, "table5", table5)
    for name in ("table4", "fig5", "supp"):
        monkeypatch.delitem(ablations.ABLATIONS, name)
    calls = []
    real = bench_runs.train_run
    monkeypatch.setattr(bench_runs, "train_run", lambda cfg, *a, **k: calls.append(cfg) or real(cfg, *a, **k))
    out = tmp_path / "all.json"
    code = cli.bench_main(["--ablation", "all", "--seeds", "2", "--epochs", "1", "--output", str(out), *TINY])
    printed = " ".join(capsys.readouterr().out.split())
    assert code == 0
    assert len(calls) == 2 * 3  # 3 distinct configs (baseline, no distillation, full w/o memory) x 2 seeds
    assert sorted(c.train.seed for c in calls) == [0, 0, 0, 1, 1, 1]
    data = json.loads(out.read_text())
    assert [d["ablation"] for d in data] == ["table3", "table5"]
    t3, t5 = data
    for result in data:
        assert result["head"] == "facnet" and result["data"] == "synthetic" and result["seeds"] == [0, 1]
        assert result["tiou"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7] and result["epochs"] == 1
        assert result["environment"]["torch"] and result["skipped"] == []
        for row in result["rows"]:
            per_seed = np.array([r["avg_map_percent"] for r in row["per_seed"]])
            assert np.isclose(row["avg_map_percent_mean"], per_seed.mean())
            assert np.isclose(row["avg_map_percent_std"], per_seed.std(ddof=1))
            assert len(row["map_percent_mean"]) == 7 and [r["seed"] for r in row["per_seed"]] == [0, 1]
    assert [r["variant"] for r in t3["rows"]] == list(BASIC[:3])
    assert [r["rskp"] for r in t3["rows"]] == [False, True, True]
    assert t3["rows"][1]["overrides"] == list(table3[1].overrides) and t3["rows"][0]["paper"]["AVG"] == 36.8
    assert t5["rows"][0]["per_seed"] == t3["rows"][2]["per_seed"]  # the same runs, trained once
    assert t3["rows"][0]["per_seed"] != t3["rows"][2]["per_seed"]
    assert "Ablation table3, facnet" in printed and "Ablation table5" in printed and "+pseudo-label" in printed
    assert "paper 0.3" not in printed  # synthetic data: ours alone


def test_merge_pools_ablation_seeds(monkeypatch, tmp_path) -> None:
    def result(seed: int, values: list[float]) -> dict:
        rows = [{"variant": name, "per_seed": [{"seed": seed, "map_percent": [v, v], "avg_map_percent": v}]}
                for name, v in zip(BASIC[:2], values)]
        return {"head": "bm", "data": "synthetic", "ablation": "table3", "seeds": [seed], "tiou": [0.1, 0.5],
                "epochs": 3, "selection": "test", "rows": rows, "skipped": [], "diagnosis": []}

    files = []
    for seed, values in enumerate([[10.0, 20.0], [14.0, 30.0]]):
        files.append(tmp_path / f"s{seed}.json")
        files[-1].write_text(json.dumps(result(seed, values)))
    out = tmp_path / "merged.json"
    assert cli.bench_main(["--merge", *map(str, files), "--output", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["ablation"] == "table3" and merged["seeds"] == [0, 1]
    assert np.isclose(merged["rows"][0]["avg_map_percent_mean"], 12.0)
    assert np.isclose(merged["rows"][1]["avg_map_percent_std"], np.std([20, 30], ddof=1))
    assert "gain_percent_mean" not in merged["rows"][1]
    other = result(2, [1.0, 2.0])
    other["rows"] = other["rows"][::-1]
    (tmp_path / "bad.json").write_text(json.dumps(other))
    assert cli.bench_main(["--merge", str(files[0]), str(tmp_path / "bad.json")]) == 2


def test_paper_columns_beside_ours_for_thumos() -> None:
    from rich.console import Console

    rows = [{"variant": r.name, "paper": r.paper, "map_percent_mean": [1.0, 2.0, 3.0],
             "map_percent_std": [0.0] * 3, "avg_map_percent_mean": 2.0, "avg_map_percent_std": 0.0}
            for r in ablations.ABLATIONS["table4"]]
    result = {"head": "facnet", "data": "wtalc", "ablation": "table4", "seeds": [0], "tiou": [0.3, 0.5, 0.7],
              "epochs": 1, "selection": "test", "rows": rows}
    console = Console(width=250, record=True)
    console.print(bench.ablation_table(result, paper=True))
    text = console.export_text()
    assert "paper AVG" in text and "34.8" in text and "42.8" in text and "EM-Att w/o BP" in text
    result["ablation"], result["rows"] = "fig5", rows[:1]
    rows[0]["paper"] = None
    console.print(bench.ablation_table(result, paper=True))
    assert "not given in the text" in " ".join(console.export_text().split())


def test_help_names_the_ablation_tables() -> None:
    text = " ".join(bench.build_parser().format_help().split())
    assert "--ablation {table3,table4,table5,fig5,supp,all}" in text and "replace mu^a with F" in text


@_needs("rskp.summarizer.method", "features", "abl-reps")
def test_table3_end_to_end(tmp_path) -> None:
    out = tmp_path / "t3.json"
    assert cli.bench_main(["--ablation", "table3", "--seeds", "1", "--epochs", "1", "--output", str(out), *TINY]) == 0
    data = json.loads(out.read_text())
    assert [r["variant"] for r in data["rows"]] == [r.name for r in ablations.ABLATIONS["table3"]]


@_needs("rskp.propagation.method", "unrolled", "abl-walk")
@_needs("rskp.summarizer.region", "foreground", "abl-reps")
def test_every_row_validates() -> None:
    """Every row of every table is a valid config change of the default recipe (the switches of both branches)."""
    plan = bench_runs.plan_ablation(bench.load_recipe(bench.build_parser().parse_args([])), list(ablations.ABLATION_NAMES))
    assert len(plan.rows) + len(plan.skipped) == sum(len(rows) for rows in ablations.ABLATIONS.values())
    fig5 = [cfg for t, _, cfg in plan.rows if t == "fig5"]
    assert [c.rskp.propagation.steps for c in fig5[:5]] == [1, 2, 3, 5, 10]
    # distinct configs: 5 + 6 + 4 + 6 + 6 rows minus the ones shared with "+pseudo-label supervision" (3)
    assert len(plan.configs) + sum(1 for t, r, _ in plan.skipped) == 27 - 3
