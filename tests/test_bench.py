"""``rskp-bench``: JSON schema, statistics, warm-up scaling, paper rows and error messages."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rskp_plugin import bench, bench_results, cli

TINY = [
    "--set", "data.feature_dim=16", "--set", "data.num_train=8", "--set", "data.num_test=4",
    "--set", "head.options={embed_dim: 16}", "--set", "optimizer.lr=1e-3", "--set", "optimizer.accumulation=4",
    "--set", "train.eval_interval=1", "--no-progress",
]


def test_bench_json_schema(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # without --output, results go to a new folder under ./runs
    code = cli.bench_main(["--head", "facnet", "--seeds", "2", "--epochs", "2", *TINY])
    printed = " ".join(capsys.readouterr().out.split())
    assert code == 0 and "gain" in printed and "head+rskp" in printed
    (folder,) = (tmp_path / "runs").iterdir()
    out = folder / "results.json"
    assert folder.name.startswith("bench-facnet-synthetic-")
    assert f"results written to {out.relative_to(tmp_path)}" in printed
    data = json.loads(out.read_text())
    assert data["head"] == "facnet" and data["data"] == "synthetic" and data["seeds"] == [0, 1]
    assert data["tiou"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert [row["variant"] for row in data["rows"]] == ["head", "head+rskp"]
    for row in data["rows"]:
        assert len(row["map_percent_mean"]) == len(row["map_percent_std"]) == 7
        per_seed = np.array([r["avg_map_percent"] for r in row["per_seed"]])
        assert np.isclose(row["avg_map_percent_mean"], per_seed.mean())
        assert np.isclose(row["avg_map_percent_std"], per_seed.std(ddof=1))
        assert all(0 <= m <= 100 for m in row["map_percent_mean"]) and all(s >= 0 for s in row["map_percent_std"])
        for run in row["per_seed"]:  # per-class AP (%) of the reported evaluation; its class mean is the mAP
            per_class = np.array(list(run["per_class_ap_percent"].values()))
            np.testing.assert_allclose(per_class.mean(axis=0), run["map_percent"], atol=1e-9)
    gains = [b["avg_map_percent"] - a["avg_map_percent"]
             for a, b in zip(data["rows"][0]["per_seed"], data["rows"][1]["per_seed"])]
    assert np.isclose(data["rows"][1]["gain_percent_mean"], np.mean(gains))
    assert data["config"]["train"]["epochs"] == 2 and data["config"]["rskp"]["memory"]["warmup_epochs"] == 0
    assert data["environment"]["torch"] and "git_commit" in data["environment"]
    # diagnostics per seed and evaluation epoch; a diagnosis for every seed where RSKP is below the head
    for row in data["rows"]:
        for run in row["per_seed"]:
            assert [d["epoch"] for d in run["diagnostics"]] == [1, 2]
            assert all(d["branches"]["main"] is not None for d in run["diagnostics"])
    assert [r["branches"]["teacher"] is not None for r in data["rows"][1]["per_seed"][0]["diagnostics"]] == [1, 1]
    below = [b["seed"] for a, b in zip(*(row["per_seed"] for row in data["rows"]))
             if b["avg_map_percent"] < a["avg_map_percent"]]
    assert [d["seed"] for d in data["diagnosis"]] == below
    for d in data["diagnosis"]:
        assert d["message"].startswith(f"RSKP below head on seed {d['seed']}") and d["findings"]
        assert d["message"].split(":")[0] in " ".join(printed.split())


@given(st.lists(st.lists(st.floats(0, 100), min_size=3, max_size=3), min_size=1, max_size=5))
def test_summary_is_mean_and_sample_std(values) -> None:
    per_seed = [{"map_percent": v, "avg_map_percent": float(np.mean(v))} for v in values]
    summary = bench_results.summarize(per_seed)
    arr = np.array(values)
    ddof = 1 if len(values) > 1 else 0
    assert np.allclose(summary["map_percent_mean"], arr.mean(0))
    assert np.allclose(summary["map_percent_std"], arr.std(0, ddof=ddof))
    assert np.isclose(summary["avg_map_percent_mean"], arr.mean(1).mean())


def test_epochs_scale_the_warmup() -> None:
    args = bench.build_parser().parse_args(["--epochs", "200", "--recipe", "paper"])
    assert "rskp.memory.warmup_epochs=100" in bench.recipe_overrides(args, 200, 100)
    args = bench.build_parser().parse_args(["--epochs", "30"])
    assert "rskp.memory.warmup_epochs=14" in bench.recipe_overrides(args, 200, 100)
    assert bench.load_recipe(bench.build_parser().parse_args(["--epochs", "40"])).rskp.memory.warmup_epochs == 19


def test_paper_rows_beside_ours_for_thumos() -> None:
    from rich.console import Console

    result = {
        "head": "wum", "data": "wtalc", "seeds": [0], "tiou": [0.1, 0.3, 0.5, 0.7], "epochs": 1, "selection": "test",
        "rows": [{"variant": "head", "map_percent_mean": [1, 2, 3, 4], "map_percent_std": [0] * 4,
                  "avg_map_percent_mean": 2.5, "avg_map_percent_std": 0.0},
                 {"variant": "head+rskp", "map_percent_mean": [2, 3, 4, 5], "map_percent_std": [0] * 4,
                  "avg_map_percent_mean": 3.5, "avg_map_percent_std": 0.0, "gain_percent_mean": 1.0,
                  "gain_percent_std": 0.0}],
    }
    console = Console(width=200, record=True)
    console.print(bench.results_table(result, paper=True))
    text = console.export_text()
    assert "paper: head+rskp" in text and "42.4" in text and "53.5" in text and "+1.00" in text


def test_unknown_head_and_missing_root(capsys) -> None:
    assert cli.bench_main(["--head", "wun", "--no-progress"]) == 2
    assert 'Did you mean "wum"' in " ".join(capsys.readouterr().err.split())
    assert cli.bench_main(["--data", "wtalc", "--no-progress"]) == 2
    assert "--data-root" in " ".join(capsys.readouterr().err.split())


def test_help_documents_every_option() -> None:
    for action in bench.build_parser()._actions:
        assert action.help and len(action.help) > 10, action.option_strings


def _result(seed: int, head_avg: float, rskp_avg: float, *, legacy: bool = False) -> dict:
    if legacy:  # files written before the keys named their unit
        run = lambda avg: {"seed": seed, "map": [avg + 1, avg - 1], "average": avg, "final_average": avg}
    else:
        run = lambda avg: {"seed": seed, "map_percent": [avg + 1, avg - 1], "avg_map_percent": avg}
    return {"head": "bm", "data": "synthetic", "seeds": [seed], "tiou": [0.1, 0.5], "epochs": 3, "selection": "test",
            "rows": [{"variant": "head", "per_seed": [run(head_avg)]},
                     {"variant": "head+rskp", "per_seed": [run(rskp_avg)]}]}


def test_merge_pools_seeds_from_separate_files(tmp_path, capsys) -> None:
    for seed, (a, b) in enumerate([(10.0, 12.0), (20.0, 21.0), (30.0, 36.0)]):
        (tmp_path / f"s{seed}.json").write_text(json.dumps([_result(seed, a, b, legacy=seed == 1)]))
    out = tmp_path / "merged.json"
    files = [str(tmp_path / f"s{i}.json") for i in range(3)]
    assert cli.bench_main(["--merge", *files, "--output", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["seeds"] == [0, 1, 2]
    head, rskp = merged["rows"]
    assert np.isclose(head["avg_map_percent_mean"], 20.0) and np.isclose(head["avg_map_percent_std"], 10.0)
    assert np.allclose(rskp["map_percent_mean"], [24.0, 22.0])
    assert np.isclose(rskp["gain_percent_mean"], 3.0)
    assert np.isclose(rskp["gain_percent_std"], np.std([2, 1, 6], ddof=1))
    assert not {"map_mean", "average_mean", "gain_mean"} & set(rskp)  # the legacy file's keys were renamed
    assert rskp["per_seed"][1] == {"seed": 1, "map_percent": [22.0, 20.0], "avg_map_percent": 21.0,
                                   "final_avg_map_percent": 21.0}
    assert cli.bench_main(["--merge", files[0], files[0]]) == 2  # the same seed twice
    assert "appear twice" in " ".join(capsys.readouterr().err.split())


def test_rskp_bench_is_an_alias_of_rskp_bench(tmp_path, capsys) -> None:
    """`rskp-bench ARGS` and `rskp bench ARGS` print the same and exit the same, errors included."""
    (tmp_path / "s0.json").write_text(json.dumps([_result(0, 10.0, 12.0)]))
    (tmp_path / "s1.json").write_text(json.dumps([_result(1, 20.0, 21.0)]))
    files = [str(tmp_path / "s0.json"), str(tmp_path / "s1.json")]
    outputs = []
    for entry, prefix in ((cli.bench_main, []), (cli.main, ["bench"])):
        assert entry([*prefix, "--merge", *files]) == 0
        assert entry([*prefix, "--merge", files[0], files[0]]) == 2
        assert entry([*prefix, "--head", "wun", "--no-progress"]) == 2
        outputs.append(capsys.readouterr())
    assert outputs[0] == outputs[1]
    assert "appear twice" in outputs[0].err and 'Did you mean "wum"' in " ".join(outputs[0].err.split())


def test_an_interrupted_bench_keeps_every_finished_pair(tmp_path, capsys, monkeypatch) -> None:
    """Ctrl-C after the first seed's pair: its results file holds that pair, and ``--merge`` reads it."""
    from rskp_plugin import bench_runs

    real, calls = bench_runs.train_run, []

    def interrupted_third_run(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # seed 1's head alone: the pair of seed 0 is done
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bench_runs, "train_run", interrupted_third_run)
    out = tmp_path / "partial.json"
    assert cli.bench_main(["--head", "facnet", "--seeds", "3", "--epochs", "1", "--output", str(out), *TINY]) == 130
    assert "the finished pairs are in" in " ".join(capsys.readouterr().err.split())
    data = json.loads(out.read_text())
    assert data["seeds"] == [0] and [len(r["per_seed"]) for r in data["rows"]] == [1, 1]
    assert not out.with_name("partial.json.tmp").exists()
    assert cli.bench_main(["--merge", str(out)]) == 0
