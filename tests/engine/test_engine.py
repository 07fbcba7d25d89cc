"""Training engine: batched accumulation equals the official one-video loop, warm-up schedule, resume, seeds,
model selection, configs and errors. Tiny data (16-d features, tens of snippets), so the file runs in seconds."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from _tiny import config, tiny_dataset, train_epochs

from rskp_plugin.config_io import apply_overrides
from rskp_plugin.data import collate
from rskp_plugin.engine import (
    Datasets, ExperimentConfig, HeadConfig, Trainer, build_datasets, load_experiment, packaged_configs,
)
from rskp_plugin.engine.loop import plan_microbatches
from rskp_plugin.errors import ConfigError, DataError, UnknownHeadError

HEADS = ("facnet", "stpn", "bm", "wum")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def datasets() -> Datasets:
    return Datasets(train=tiny_dataset(10, 0, "train"), test=tiny_dataset(6, 1, "test"),
                    heldout=tiny_dataset(4, 2, "heldout"), collate=collate)


def max_weight_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


@pytest.mark.parametrize("head", HEADS)
def test_batched_training_equals_one_video_at_a_time(head, datasets) -> None:
    """Official loop (backward per video, step every 5 here on the summed gradient) vs padded micro-batches."""
    one = train_epochs(config(head, "optimizer.batch_size=1"), datasets, 1)  # 10 videos: two steps
    batched = train_epochs(config(head, "optimizer.batch_size=5"), datasets, 1)
    in_order = train_epochs(config(head, "optimizer.batch_size=5", "optimizer.group_by_length=false"), datasets, 1)
    assert max_weight_difference(one.model, batched.model) < 1e-5
    assert max_weight_difference(one.model, in_order.model) < 1e-5
    untrained = Trainer(config(head), datasets=datasets, progress=False)
    assert max_weight_difference(batched.model, untrained.model) > 1e-4  # training moved the weights: can fail


@pytest.mark.parametrize("head", HEADS)
def test_batched_training_equals_one_video_at_a_time_with_the_memory_bank(head, datasets) -> None:
    """After warm-up too: row j of a batch reads the bank as video j of the official loop does."""
    memory_on = ("rskp.memory.warmup_epochs=0",)  # the bank fills after epoch 0; epoch 1 uses and updates it
    one = train_epochs(config(head, "optimizer.batch_size=1", *memory_on), datasets, 2)
    batched = train_epochs(config(head, "optimizer.batch_size=5", *memory_on), datasets, 2)
    assert one.model.memory_ready and batched.model.memory_ready
    assert max_weight_difference(one.model, batched.model) < 1e-5  # state_dict: the memory bank's buffers too
    warm_only = train_epochs(config(head, "optimizer.batch_size=5", "rskp.memory.warmup_epochs=5"), datasets, 2)
    assert max_weight_difference(batched.model, warm_only.model) > 1e-4  # the inter branch changed training


def test_microbatch_runs_visit_a_group_in_the_same_order_for_every_batch_size() -> None:
    lengths = [30, 12, 30, 7, 19, 44, 12, 3, 25, 9]
    for by_length in (True, False):
        orders = {m: np.concatenate(plan_microbatches(lengths, m, group_by_length=by_length)).tolist()
                  for m in range(1, 11)}
        assert len({tuple(o) for o in orders.values()}) == 1
        assert orders[1] == (sorted(range(10), key=lambda i: lengths[i]) if by_length else list(range(10)))


def test_summed_and_averaged_gradients_differ_by_the_group_size(datasets) -> None:
    """sum_gradients=false averages over the group: with SGD-like scale sensitivity the steps differ."""
    summed = Trainer(config("facnet", "optimizer.weight_decay=0.1"), datasets=datasets, progress=False)
    averaged = Trainer(config("facnet", "optimizer.weight_decay=0.1", "optimizer.sum_gradients=false"),
                       datasets=datasets, progress=False)
    for trainer in (summed, averaged):
        trainer.train_epoch(0)
    assert max_weight_difference(summed.model, averaged.model) > 1e-5


@given(
    st.lists(st.integers(1, 5000), min_size=1, max_size=12), st.integers(1, 12), st.booleans(),
)
def test_microbatch_plan_covers_each_video_once(lengths, max_batch, by_length) -> None:
    runs = plan_microbatches(lengths, max_batch, group_by_length=by_length)
    flat = np.concatenate(runs)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert all(1 <= len(r) <= max_batch for r in runs)
    padded = sum(len(r) * max(lengths[i] for i in r) for r in runs)
    in_order = sum(len(r) * max(lengths[i] for i in r) for r in plan_microbatches(lengths, max_batch,
                                                                                    group_by_length=False))
    if by_length:  # the plan pays at most one forward's overhead more than the in-order split per run
        assert padded + 256 * len(runs) <= in_order + 256 * -(-len(lengths) // max_batch)


def test_memory_bank_joins_after_the_warmup_epoch(datasets) -> None:
    trainer = Trainer(config("facnet", "rskp.memory.warmup_epochs=1"), datasets=datasets, progress=False)
    trainer.model.train()
    seen = []
    for epoch in range(3):
        assert trainer.model.memory_ready == (epoch >= 2)  # epochs 0 and 1 warm up, as 0..100 of 200
        features, mask, labels = trainer._to_device(collate(datasets.train.videos[:2]))
        out = trainer.model(features, mask=mask, labels=labels)
        seen.append("cls/inter" in out.losses)
        trainer.train_epoch(epoch)
        trainer.epoch += 1
        if trainer.memory_due:
            trainer.initialize_memory()
    assert seen == [False, False, True]
    assert bool(torch.isfinite(trainer.model.memory.scores).any())


def test_head_alone_has_no_memory(datasets) -> None:
    trainer = train_epochs(config("facnet", "rskp_enabled=false", "rskp.memory.warmup_epochs=0"), datasets, 2)
    assert not trainer.model.memory_ready and not hasattr(trainer.model, "summarizer")


@pytest.mark.parametrize("head", ["facnet", "wum"])
def test_resume_continues_to_the_same_result(head, datasets, tmp_path) -> None:
    """A run stopped after epoch 1 and resumed in a fresh trainer ends where an uninterrupted run ends, with the
    memory bank in use (warm-up 0) and dropout on (RNG states restored)."""
    cfg = lambda out: config(head, f"train.output_dir={out}", "train.epochs=2", "rskp.memory.warmup_epochs=0",
                             "optimizer.batch_size=5", dropout=0.5)
    straight = Trainer(cfg(tmp_path / "a"), datasets=datasets, progress=False)
    result = straight.fit()
    killed = Trainer(cfg(tmp_path / "b"), datasets=datasets, progress=False)
    killed.fit(stop_after=1)
    torch.manual_seed(1234), np.random.seed(1234)  # another process: global generators elsewhere
    resumed = Trainer.resume(tmp_path / "b" / "last.pt", datasets=datasets, progress=False)
    assert resumed.epoch == 1
    again = resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.history == result.history and again.best == result.best
    assert (tmp_path / "b" / "results.json").is_file() and (tmp_path / "b" / "best.pt").is_file()


def test_seeds_control_the_run(datasets) -> None:
    def run(seed: int) -> Trainer:  # the global generators are seeded when a trainer is built
        trainer = Trainer(config("stpn", f"train.seed={seed}", dropout=0.5), datasets=datasets, progress=False)
        trainer.train_epoch(0)
        return trainer

    a, b, c = run(5), run(5), run(6)
    assert max_weight_difference(a.model, b.model) == 0.0
    assert max_weight_difference(a.model, c.model) > 1e-4


def test_heldout_selection_trains_on_the_rest(tmp_path) -> None:
    cfg = config("facnet", "train.selection=heldout", "train.heldout_fraction=0.25", "train.epochs=1",
                 "data.feature_dim=16", "data.num_train=16", "data.num_test=4")
    data = build_datasets(cfg)
    assert len(data.heldout.videos) == 4 and len(data.train.videos) == 12  # 16 synthetic videos, 25 % held out
    assert not set(data.train.names) & set(data.heldout.names)
    result = Trainer(cfg, datasets=data, progress=False).fit()
    assert result.selection == "heldout"
    assert all("heldout" in record for record in result.history)
    assert result.best["heldout"]["avg_map_percent"] == max(r["heldout"]["avg_map_percent"] for r in result.history)


def test_results_record_environment_and_config(datasets, tmp_path) -> None:
    import json

    trainer = Trainer(config("bm", f"train.output_dir={tmp_path}", "train.epochs=1"), datasets=datasets,
                      progress=False)
    trainer.fit()
    data = json.loads((tmp_path / "results.json").read_text())
    env = data["environment"]
    assert env["torch"] == str(torch.__version__) and env["device"] == "cpu" and "bm" in env["heads"]
    assert data["config"]["head"]["name"] == "bm" and data["config"]["optimizer"]["accumulation"] == 5
    best = data["best"]["test"]
    assert len(best["map_percent"]) == 7 and 0 <= best["avg_map_percent"] <= 100
    assert best["avg_map_percent"] == pytest.approx(np.mean(best["map_percent"]))
    # per-class AP (%), one list per evaluated class; its mean over classes is the mAP
    per_class = np.array(list(best["per_class_ap_percent"].values()))  # (C, thresholds)
    assert set(best["per_class_ap_percent"]) <= set(datasets.train.class_names) and per_class.shape[1] == 7
    np.testing.assert_allclose(per_class.mean(axis=0), best["map_percent"], atol=1e-9)


def test_paper_yaml_is_the_library_default() -> None:
    paper = load_experiment(ROOT / "benchmarks" / "paper.yaml", ["head.recipe=none"])
    default = ExperimentConfig(head=HeadConfig(recipe="none"))
    assert attrs.evolve(paper, train=attrs.evolve(paper.train, output_dir=default.train.output_dir)) == default


@pytest.mark.parametrize("name", packaged_configs())
def test_packaged_configs_load(name) -> None:
    cfg = load_experiment(name)
    assert cfg.train.epochs >= 1


def test_quick_recipe_shortens_warmup_in_proportion() -> None:
    quick, paper = load_experiment("quick"), ExperimentConfig()
    share = lambda c: (c.rskp.memory.warmup_epochs + 1) / c.train.epochs
    assert abs(share(quick) - share(paper)) < 0.05


def test_typo_in_a_yaml_key_names_it_and_the_valid_keys(tmp_path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("optimizer:\n  learning_rate: 0.001\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    message = str(info.value)
    assert "optimizer.learning_rate" in message and "lr" in message and "weight_decay" in message


def test_missing_data_root_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="--data-root"):
        build_datasets(load_experiment(None, ["data.source=wtalc"]))
    with pytest.raises(DataError, match="does not exist"):
        build_datasets(load_experiment(None, ["data.source=wtalc", "data.root=/nonexistent/thumos"]))


def test_unknown_head_and_bad_options(datasets) -> None:
    with pytest.raises(UnknownHeadError, match="wum"):
        Trainer(config("wun"), datasets=datasets, progress=False)
    with pytest.raises(ConfigError, match="head.options"):
        Trainer(config("facnet", embed_dimension=3), datasets=datasets, progress=False)


def test_invalid_optimizer_settings() -> None:
    with pytest.raises(ConfigError, match="betas"):
        load_experiment(None, ["optimizer.betas=[0.9, 1.5]"])
    with pytest.raises(ConfigError, match="device"):
        from rskp_plugin.engine import resolve_device

        resolve_device("tpu")


@pytest.mark.parametrize(
    "override, match",
    [
        ("train.tiou=[0.5, x]", r"train.tiou must be .* in \(0, 1\], got \[0.5, 'x'\]"),
        ("train.tiou=[1.5, -2]", r"train.tiou must be .* in \(0, 1\], got \[1.5, -2\]"),
        ("train.tiou=[]", "non-empty"),
        ("train.seed=-1", r"seed must be an integer from 0 to 2\*\*64 - 1, got -1"),
        (f"train.seed={2**64}", "seed must be an integer"),
        ("data.seed=-3", "seed must be an integer"),
        ("optimizer.lr=.inf", "lr must be a finite number"),
        ("data.on_error=ignore", "on_error"),
    ],
)
def test_bad_values_are_rejected_before_any_work(override, match) -> None:
    with pytest.raises(ConfigError, match=match):
        load_experiment(None, [override])


def test_seed_bounds_are_what_torch_accepts() -> None:
    assert load_experiment(None, [f"train.seed={2**64 - 1}"]).train.seed == 2**64 - 1
    torch.manual_seed(2**64 - 1)  # the largest seed the config accepts is one torch takes


def test_every_config_head_and_variant_has_its_own_run_folder(tmp_path) -> None:
    folder = lambda name, **values: load_experiment(name, values=values).train.output_dir
    assert folder("quick", **{"head.name": "wum"}) == "runs/quick-wum"
    assert folder("quick", **{"head.name": "wum", "rskp_enabled": False}) == "runs/quick-wum-norskp"
    assert folder(None) == "runs/default-facnet"
    assert folder("quick", **{"train.output_dir": "mine"}) == "mine"
    folders = {folder(name, **{"head.name": h, "rskp_enabled": r}) for name in packaged_configs() for h in HEADS
               for r in (True, False)}
    assert len(folders) == len(packaged_configs()) * len(HEADS) * 2
    exp = tmp_path / "exp.yaml"
    exp.write_text("train:\n  output_dir: out/{config}/{head}\n")
    assert folder(exp, **{"head.name": "bm"}) == "out/exp/bm"


def test_a_config_built_in_code_gets_the_default_folder(datasets, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = attrs.evolve(config("stpn"), train=attrs.evolve(config("stpn").train, output_dir="runs/{run}"))
    trainer = Trainer(cfg, datasets=datasets, progress=False)
    assert trainer.config.train.output_dir == "runs/default-stpn" and trainer.output_dir == Path("runs/default-stpn")
    assert list(tmp_path.iterdir()) == []  # checked, not created before something is saved


def test_folders_source_reads_gt_json_under_a_relative_root_with_on_error(tmp_path, monkeypatch) -> None:
    import rskp_plugin.data

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_load_folders(root, gt, subset, **kwargs):
        calls.append((Path(gt), kwargs["on_error"]))
        return tiny_dataset(4, 0, subset)

    monkeypatch.setattr(rskp_plugin.data, "load_folders", fake_load_folders)
    build_datasets(load_experiment(None, ["data.source=folders", "data.root=data", "data.on_error=skip"]))
    assert calls == [(Path("data/gt.json"), "skip")] * 2
    calls.clear()
    build_datasets(load_experiment(None, ["data.source=folders", "data.root=data", "data.gt_json=ann/gt.json"]))
    assert calls == [(Path("data/ann/gt.json"), "raise")] * 2
    calls.clear()
    absolute = tmp_path / "elsewhere.json"
    build_datasets(load_experiment(None, ["data.source=folders", "data.root=data", f"data.gt_json={absolute}"]))
    assert calls == [(absolute, "raise")] * 2


def test_wtalc_source_passes_on_error(tmp_path, monkeypatch) -> None:
    import rskp_plugin.data

    seen = []
    monkeypatch.setattr(rskp_plugin.data, "load_wtalc",
                        lambda root, name, subset, **kw: seen.append(kw["on_error"]) or tiny_dataset(4, 0, subset))
    build_datasets(load_experiment(None, ["data.source=wtalc", f"data.root={tmp_path}", "data.on_error=skip"]))
    assert seen == ["skip", "skip"]


def test_a_head_that_refuses_an_option_value_is_named(datasets) -> None:
    with pytest.raises(ConfigError, match=r'head "facnet" rejected its options \(.*embed_dim=-3.*\): RuntimeError'):
        Trainer(config("facnet", embed_dim=-3), datasets=datasets, progress=False)


def test_a_diverging_run_names_the_epoch_the_terms_and_a_remedy(datasets) -> None:
    from rskp_plugin.errors import TrainingError

    trainer = Trainer(config("facnet"), datasets=datasets, progress=False)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))  # what a diverged step leaves behind
    with pytest.raises(TrainingError) as info:
        trainer.train_epoch(3)
    message = str(info.value)
    assert "epoch 4" in message and "cls/main=nan" in message and "optimizer.lr is 0.001" in message
    assert isinstance(info.value, FloatingPointError)  # callers catching the builtin still do


def test_a_new_run_refuses_a_folder_holding_another_run(datasets, tmp_path) -> None:
    from rskp_plugin.errors import OutputError

    first = Trainer(config("facnet", f"train.output_dir={tmp_path}", "train.epochs=2"), datasets=datasets,
                    progress=False)
    first.fit()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(OutputError, match=rf"{tmp_path}.*already holds a run.*--overwrite.*--output-dir"):
        Trainer(config("stpn", f"train.output_dir={tmp_path}", "train.epochs=1"), datasets=datasets, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing touched
    # --overwrite: the old run's files go first, so a shorter or killed new run leaves none of them behind
    second = Trainer(config("stpn", f"train.output_dir={tmp_path}", "train.epochs=2"), datasets=datasets,
                     progress=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    second.fit(stop_after=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "config.yaml", "last.pt", "metrics.csv",
                                                          "metrics.jsonl"]
    assert torch.load(tmp_path / "best.pt", weights_only=True)["config"]["head"]["name"] == "stpn"


def test_resume_writes_beside_the_checkpoint_it_was_given_and_cleans_stray_temp_files(datasets, tmp_path) -> None:
    import shutil

    cfg = config("facnet", f"train.output_dir={tmp_path / 'run'}", "train.epochs=2")
    Trainer(cfg, datasets=datasets, progress=False).fit(stop_after=1)
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    for stray in (".last.pt.k2j3h4.tmp", ".best.pt.x9y8.tmp", "results.json.tmp", "metrics.jsonl.tmp",
                  "metrics.csv.tmp", "config.yaml.tmp"):  # a kill during a write
        (tmp_path / "copy" / stray).write_bytes(b"half")
    (tmp_path / "copy" / "notes.txt").write_text("mine")
    original = (tmp_path / "run" / "last.pt").read_bytes()
    resumed = Trainer.resume(tmp_path / "copy" / "last.pt", datasets=datasets, progress=False)
    assert resumed.output_dir == tmp_path / "copy" and resumed.last_checkpoint == (tmp_path / "copy" / "last.pt", 1)
    resumed.fit()
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["best.pt", "config.yaml", "last.pt",
                                                                       "metrics.csv", "metrics.jsonl",
                                                                       "notes.txt", "results.json"]
    assert (tmp_path / "run" / "last.pt").read_bytes() == original  # the original folder is left alone
    assert torch.load(tmp_path / "copy" / "last.pt", weights_only=True)["epoch"] == 2


def test_resume_into_another_folder_holding_a_run_is_refused(datasets, tmp_path) -> None:
    from rskp_plugin.errors import OutputError

    for name in ("a", "b"):
        Trainer(config("facnet", f"train.output_dir={tmp_path / name}", "train.epochs=2"), datasets=datasets,
                progress=False).fit(stop_after=1)
    with pytest.raises(OutputError, match="already holds a run"):
        Trainer.resume(tmp_path / "a", overrides=[f"train.output_dir={tmp_path / 'b'}"], datasets=datasets,
                       progress=False)


def test_resume_checks_an_expected_config(datasets, tmp_path) -> None:
    cfg = config("facnet", f"train.output_dir={tmp_path}", "train.epochs=2")
    Trainer(cfg, datasets=datasets, progress=False).fit(stop_after=1)
    same = attrs.evolve(cfg, train=attrs.evolve(cfg.train, output_dir="elsewhere"))  # run folders aside
    assert Trainer.resume(tmp_path, expect=same, datasets=datasets, progress=False).epoch == 1
    other = apply_overrides(cfg, ["optimizer.lr=0.5"])
    with pytest.raises(ConfigError, match=r"optimizer.lr: 0.001 in the checkpoint, 0.5 in --config"):
        Trainer.resume(tmp_path, expect=other, datasets=datasets, progress=False)


def test_unwritable_run_folders_are_refused_before_any_work(datasets, tmp_path, monkeypatch) -> None:
    import errno
    import tempfile

    from rskp_plugin.errors import OutputError

    (tmp_path / "file").write_text("x")
    under = "lies under .*which is a file"
    for folder, match in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "run", under)):
        with pytest.raises(OutputError, match=match):
            Trainer(config("facnet", f"train.output_dir={folder}"), datasets=datasets, progress=False)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(OutputError, match=r"cannot be written \(the file system is read-only\)"):
        Trainer(config("facnet", f"train.output_dir={tmp_path / 'run'}"), datasets=datasets, progress=False)


def test_threads_default_to_one_unless_asked(monkeypatch, datasets) -> None:
    from rskp_plugin.engine import resolve_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert resolve_threads(0) == 1 and resolve_threads(3) == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert resolve_threads(0) == 2 and resolve_threads(1) == 1  # an explicit value wins over the variable
        monkeypatch.setenv("OMP_NUM_THREADS", "lots")
        assert resolve_threads(0) == 1
        Trainer(config("bm", "train.threads=2"), datasets=datasets, progress=False)
        assert torch.get_num_threads() == 2
        Trainer(config("bm"), datasets=datasets, progress=False)  # auto
        assert torch.get_num_threads() == 1
        with pytest.raises(ConfigError, match="train.threads"):
            config("bm", "train.threads=-1")
    finally:
        torch.set_num_threads(before)


def test_progress_bar_ends_complete_with_eta_and_the_last_evaluation(datasets) -> None:
    import io

    from rich.console import Console

    # a terminal (not a log file, where a run prints plain lines instead: test_cli_train)
    console = Console(file=io.StringIO(), width=200, force_terminal=True)
    trainer = Trainer(config("bm", "train.epochs=2"), datasets=datasets, progress=True, console=console)
    trainer.fit()
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())  # without the terminal's control codes
    last = trainer.history[-1]["test"]["avg_map_percent"]
    assert text.endswith("\n")  # the finished bar, then a new line for what follows
    final = text.rstrip("\n").split("\n")[-1].split("\r")[-1]
    assert "2/2" in final and "eta" in final and f"AVG mAP {last:.1f} % at epoch 2" in final


@pytest.mark.parametrize("overrides", [
    [],
    ["head.name=wum", "rskp_enabled=false", "train.tiou=[0.3, 0.5]", "optimizer.betas=[0.8, 0.9]", "train.threads=2",
     "rskp.losses.distillation_temperature=1.0", "train.amp=bf16", "data.difficulty=0.5", "optimizer.lr=3.3e-4"],
])
def test_run_folder_config_yaml_round_trips(tmp_path, datasets, overrides) -> None:
    cfg = config("bm", f"train.output_dir={tmp_path / 'run'}", "train.epochs=1", *overrides)
    Trainer(cfg, datasets=datasets, progress=False).fit()
    path = tmp_path / "run" / "config.yaml"
    assert load_experiment(path) == cfg  # what `rskp train --config <run>/config.yaml` trains
    text = path.read_text()
    # the non-default values, and every rskp value whatever its source (a later recipe change cannot alter a rerun)
    assert "accumulation: 5" in text and "eval_batch_size" not in text and "num_representatives: 8" in text


def test_resume_reads_a_checkpoint_from_before_the_keys_named_their_unit(tmp_path, datasets) -> None:
    from rskp_plugin.checkpoint import load_checkpoint, save_checkpoint

    # FAC-Net: a head whose format-2 migration leaves the stored values alone (BM's would switch L_att off, as BM's
    # class did then, and the run folder's config.yaml of this run, trained now, would disagree)
    cfg = config("facnet", f"train.output_dir={tmp_path}", "train.epochs=2")
    Trainer(cfg, datasets=datasets, progress=False).fit(stop_after=1)
    data = load_checkpoint(tmp_path / "last.pt")
    old = {"map_percent": "map", "avg_map_percent": "average", "cmap_percent": "cmap"}
    legacy = lambda r: {**r, "test": {old.get(k, k): v for k, v in r["test"].items() if k != "per_class_ap_percent"}}
    data["trainer"]["history"] = [legacy(r) for r in data["trainer"]["history"]]
    data["trainer"]["best"] = legacy(data["trainer"]["best"])
    assert "average" in data["trainer"]["best"]["test"]
    save_checkpoint(tmp_path / "last.pt", {**data, "format_version": 1})
    result = Trainer.resume(tmp_path, datasets=datasets, progress=False).fit()
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert all("avg_map_percent" in r["test"] and "average" not in r["test"] for r in result.history)


@pytest.mark.parametrize("name", packaged_configs())
def test_selection_is_held_out_by_default_everywhere(name) -> None:
    from rskp_plugin import bench

    assert ExperimentConfig().train.selection == "heldout"
    assert load_experiment(name).train.selection == "heldout"
    args = bench.build_parser().parse_args(["--recipe", name])
    assert args.selection is None and bench.load_recipe(args, "facnet").train.selection == "heldout"
