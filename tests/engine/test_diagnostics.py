"""Diagnostics: every branch from one inference pass (the fused numbers unchanged), the teacher as a prediction,
batched localisation of the branches, the metrics file, loss means and the bench's gap explanation."""

from __future__ import annotations

import json
import sys

import attrs
import numpy as np
import pytest
import torch

from _tiny import config, tiny_dataset, train_epochs

from rskp_plugin.config_io import apply_overrides
from rskp_plugin.data import collate
from rskp_plugin.engine import Datasets, Trainer
from rskp_plugin.engine.diagnostics import (
    BRANCHES, LossMeter, as_results, collect_branches, explain_gap, localize_branches, metrics_line, score_arrays,
)
from rskp_plugin.engine.inference import localize_outputs, score_detections
from rskp_plugin.evaluation import load_ground_truth
from rskp_plugin.errors import ConfigError, MissingDependencyError
from rskp_plugin.localization_settings import LocalizationSettings
from rskp_heads import facnet, stpn, wum
from rskp_plugin.method.wrapper import RSKPWrapper

HEADS = ("facnet", "stpn", "bm", "wum")
# the official code's teacher and test-time fusion (RSKPConfig.official()), whose formulas these tests spell out
OFFICIAL = ("rskp.teacher.source=propagated", "rskp.teacher.weighting=uniform", "rskp.fusion.use_intra_at_test=true")


@pytest.fixture(scope="module")
def datasets() -> Datasets:
    return Datasets(train=tiny_dataset(10, 0, "train"), test=tiny_dataset(6, 1, "test"),
                    heldout=tiny_dataset(4, 2, "heldout"), collate=collate)


def _batch(dataset):
    b = collate(dataset.videos)
    return torch.as_tensor(b.features), torch.as_tensor(b.mask), torch.as_tensor(b.labels).float()


@pytest.mark.parametrize("head", HEADS)
def test_branch_outputs_keep_the_prediction_and_give_the_teacher(head, datasets) -> None:
    trainer = train_epochs(config(head, "rskp.memory.warmup_epochs=0", *OFFICIAL), datasets, 2)
    model = trainer.model.eval()
    assert model.memory_ready
    features, mask, labels = _batch(datasets.test)
    with torch.inference_mode():
        plain = model(features, mask)
        b = model.branch_outputs(features, mask, labels)
        with_labels = model(features, mask, labels)  # eval mode: inter reads the memory of these labels
    out = b.output
    # the reported prediction: bit for bit what forward(features, mask) returns
    assert torch.equal(out.video_scores, plain.video_scores) and torch.equal(out.cas, plain.cas)
    assert torch.equal(out.main.tcam, plain.main.tcam) and torch.equal(out.intra.cas, plain.intra.cas)
    torch.testing.assert_close(out.inter.tcam, with_labels.inter.tcam, rtol=1e-4, atol=1e-4)
    w = model.config.fusion.pseudo_label_intra
    torch.testing.assert_close(b.teacher.tcam, w * out.intra.tcam + (1 - w) * out.inter.tcam)
    c = model.head.num_classes
    if head == "facnet":  # cosine classifier: the head's TCAM on the blended walk is not T; FAC-Net's CAS rule on T
        assert b.teacher_rule == "softmax"
        expected = torch.softmax(b.teacher.tcam, -1)[..., :c] * b.teacher.attention[..., None]
        torch.testing.assert_close(b.teacher.cas, expected)
    else:  # affine TCAM: the head's own prediction on w F^a + (1 - w) F^e has T as its TCAM
        assert b.teacher_rule == "head"
    assert b.teacher.cas.shape == out.cas.shape


@pytest.mark.parametrize("head", ["stpn", "facnet"])
@pytest.mark.parametrize("warm", [True, False])
def test_the_teacher_follows_the_teacher_options(head, warm, datasets) -> None:
    # the diagnostic teacher is the distillation target training uses (``Teacher.pseudo_labels``), whatever rskp.teacher says
    warmup = "rskp.memory.warmup_epochs=0" if warm else "rskp.memory.warmup_epochs=5"
    trainer = train_epochs(config(head, warmup), datasets, 1)
    features, mask, labels = _batch(datasets.test)
    for options, rules in ((("teacher.source=ensemble",), {"stpn": "head", "facnet": "softmax"}),):
        model = trainer.model
        model.config = apply_overrides(model.config, list(options))  # model.config is rskp: same weights, other teacher
        b = model.eval().branch_outputs(features, mask, labels)
        out = b.output
        assert (out.inter is not None) == warm
        expected = model.teacher.pseudo_labels(out.main, out.intra, out.inter)
        assert torch.equal(b.teacher.tcam, expected), options
        assert b.teacher_rule == rules[head], options
        assert torch.isfinite(b.teacher.cas).all() and b.teacher.cas.shape == out.cas.shape
        model.config = apply_overrides(model.config, ["teacher.source=propagated"])


def test_the_teacher_is_the_intra_branch_during_warmup(datasets) -> None:
    trainer = train_epochs(config("facnet", "rskp.memory.warmup_epochs=5", *OFFICIAL), datasets, 1)
    features, mask, labels = _batch(datasets.test)
    b = trainer.model.eval().branch_outputs(features, mask, labels)
    assert b.teacher_rule == "intra" and b.teacher is b.output.intra and b.output.inter is None


@pytest.mark.parametrize("rules", ["rskp", "facnet", "stpn", "wum"])
def test_branches_localised_together_equal_one_by_one(rules) -> None:
    rng = np.random.default_rng(3)
    dataset = tiny_dataset(5, 2, "test", classes=4)
    outputs = {}
    for name in ("main", "intra", "teacher"):
        scores = [rng.uniform(0, 1, 4) for _ in dataset.videos]
        cas = [rng.uniform(0, 0.2, (v.num_snippets, 4)) for v in dataset.videos]
        att = [rng.uniform(0, 1, v.num_snippets) for v in dataset.videos]
        score_cas = [rng.normal(size=(v.num_snippets, 4)) for v in dataset.videos] if name != "teacher" else None
        outputs[name] = (scores, cas, att, score_cas)
    settings = {"rskp": LocalizationSettings(), "facnet": facnet.OFFICIAL_LOCALIZATION, "stpn": stpn.LOCALIZATION,
                "wum": wum.LOCALIZATION}[rules]
    together = localize_branches(outputs, dataset, settings)
    ground_truth = dataset.ground_truth()
    loaded = load_ground_truth(ground_truth)
    for name, out in outputs.items():
        alone = localize_outputs(out, dataset, settings)
        assert as_results(together[name], dataset) == alone, name
        for protocol in ("activitynet", "rskp", "wtalc"):  # scored from arrays = scored from the results object
            ours = score_arrays(together[name], out[0], dataset, loaded, tiou=(0.1, 0.3, 0.5), protocol=protocol)
            theirs = score_detections(alone, out[0], dataset, tiou=(0.1, 0.3, 0.5), protocol=protocol)
            assert ours == theirs, (name, protocol)


def _records(tmp_path, datasets, *overrides: str, rskp: bool = True):
    cfg = config("facnet", "train.epochs=3", "rskp.memory.warmup_epochs=0", f"train.output_dir={tmp_path}",
                 f"rskp_enabled={str(rskp).lower()}", *overrides)
    trainer = Trainer(cfg, datasets=datasets, progress=False)
    fit = trainer.fit()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return trainer, fit, lines


def test_metrics_file_has_every_branch_and_loss_term(datasets, tmp_path) -> None:
    trainer, fit, lines = _records(tmp_path, datasets)
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    keys = {"epoch", "train_loss", "losses", "memory_ready", "eval_set", "branches", "heldout", "teacher_rule",
            "inter_classes", "time"}
    tiou = [f"{t:g}" for t in trainer.config.train.tiou]
    for line, record in zip(lines, fit.history):
        assert set(line) == keys and set(line["branches"]) == set(BRANCHES)
        for entry in line["branches"].values():
            assert entry is not None and set(entry) == {"avg", "per_tiou", "cmap", "detections"}
            assert list(entry["per_tiou"]) == tiou
            assert np.isclose(entry["avg"], np.mean(list(entry["per_tiou"].values())))
        # the fused entry is what the run reports
        assert line["branches"]["fused"]["avg"] == record["test"]["avg_map_percent"]
        assert line["branches"]["fused"]["cmap"] == record["test"]["cmap_percent"]
        assert set(line["time"]) == {"train_s", "eval_s", "diagnostics_s"} and line["time"]["train_s"] > 0
    # memory filled after epoch 1 (warm-up epoch index 0): epoch 1's inter and teacher already read it
    assert lines[0]["memory_ready"] and lines[0]["teacher_rule"] == "softmax"
    assert lines[0]["inter_classes"] == "ground_truth"
    assert set(lines[0]["losses"]) == {"cls/main", "cls/intra", "distill", "att_norm"}  # epoch 1 ran in warm-up
    assert set(lines[1]["losses"]) == {"cls/main", "cls/intra", "cls/inter", "distill", "att_norm"}
    # the loss terms add up to the total
    for line in lines:
        assert np.isclose(sum(line["losses"].values()), line["train_loss"], rtol=1e-4)


def test_head_alone_records_its_terms_and_main_branch(datasets, tmp_path) -> None:
    _, _, lines = _records(tmp_path, datasets, rskp=False)
    for line in lines:
        b = line["branches"]
        assert b["main"] == b["fused"] and b["intra"] is b["inter"] is b["teacher"] is None
        assert set(line["losses"]) == {"cls/main", "att_norm"} and line["teacher_rule"] is None


def test_diagnostics_change_no_number(datasets, tmp_path) -> None:
    on, fit_on, _ = _records(tmp_path / "on", datasets)
    off, fit_off, lines = _records(tmp_path / "off", datasets, "train.diagnostics=false")
    sa, sb = on.model.state_dict(), off.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [r["test"] for r in fit_on.history] == [r["test"] for r in fit_off.history]
    assert lines[0]["losses"] == {} and lines[0]["branches"]["main"] is None
    assert lines[0]["branches"]["fused"]["avg"] == fit_off.history[0]["test"]["avg_map_percent"]


def test_metrics_belong_to_one_run_overwrite_removes_them(datasets, tmp_path) -> None:
    from rskp_plugin.errors import OutputError

    _records(tmp_path, datasets)  # 3 evaluation lines
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "curves.png").write_bytes(b"png")
    (tmp_path / "tensorboard").mkdir()
    for name in ("last.pt", "best.pt", "results.json"):
        (tmp_path / name).unlink()
    # metrics.jsonl (or the figures and events) alone still make the folder another run's
    with pytest.raises(OutputError, match=r"already holds a run \(metrics.jsonl, metrics.csv, config.yaml, tensorboard/, "
                                          r"plots/\)"):
        Trainer(config("facnet", "train.epochs=1", f"train.output_dir={tmp_path}"), datasets=datasets, progress=False)
    trainer = Trainer(config("facnet", "train.epochs=1", f"train.output_dir={tmp_path}"), datasets=datasets,
                      progress=False, overwrite=True)
    assert list(tmp_path.iterdir()) == []  # nothing of the old run is left to append to
    trainer.fit()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1]


def test_resume_continues_the_metrics_without_repeating_an_epoch(datasets, tmp_path) -> None:
    import shutil

    cfg = config("stpn", "train.epochs=4", "rskp.memory.warmup_epochs=1", f"train.output_dir={tmp_path / 'run'}")
    first = Trainer(cfg, datasets=datasets, progress=False)
    first.fit(stop_after=2)
    shutil.copy(tmp_path / "run" / "last.pt", tmp_path / "epoch2.pt")
    first.fit(stop_after=3)  # evaluated epoch 3, then "killed" before its last.pt: put epoch 2's back
    shutil.copy(tmp_path / "epoch2.pt", tmp_path / "run" / "last.pt")
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2, 3]
    resumed = Trainer.resume(tmp_path / "run" / "last.pt", datasets=datasets, progress=False)
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2]  # as the checkpoint
    fit = resumed.fit()
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4]
    assert [line["branches"]["fused"]["avg"] for line in lines] == [r["test"]["avg_map_percent"] for r in fit.history]
    # the same numbers as a run that was never interrupted
    whole = Trainer(attrs.evolve(cfg, train=attrs.evolve(cfg.train, output_dir=str(tmp_path / "whole"))),
                    datasets=datasets, progress=False).fit()
    assert [r["test"] for r in whole.history] == [r["test"] for r in fit.history]


def test_loss_meter_is_a_per_video_mean() -> None:
    meter = LossMeter()
    meter.add({"a": torch.tensor(1.0), "b": torch.tensor(4.0)}, 3)
    meter.add({"a": torch.tensor(2.0), "b": torch.tensor(0.0)}, 1)
    assert meter.means() == {"a": pytest.approx(5 / 4), "b": pytest.approx(3.0)}


def test_tensorboard_switch(datasets, monkeypatch, tmp_path) -> None:
    with pytest.raises(ConfigError, match="train.output_dir"):
        Trainer(config("facnet", "train.tensorboard=true"), datasets=datasets, progress=False)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(MissingDependencyError, match=r'pip install "rskp-plugin\[tensorboard\]"'):
        Trainer(config("facnet", "train.tensorboard=true", f"train.output_dir={tmp_path}"), datasets=datasets,
                progress=False)


def _run(average: float, epoch: int, **branches) -> dict:
    full = {name: None for name in BRANCHES}
    full.update({k: {"avg": v, "cmap": 50.0} for k, v in branches.items()})
    return {"seed": 1, "avg_map_percent": average, "epoch": epoch,
            "diagnostics": [{"epoch": epoch, "branches": full, "losses": {"cls/main": 0.6, "att_norm": -0.1}}]}


def test_explain_gap_names_the_teacher_the_fusion_and_the_student() -> None:
    head = _run(60.0, 5, fused=60.0, main=60.0)
    head["diagnostics"][0]["losses"] = {"cls/main": 0.3, "att_norm": -0.1}
    assert explain_gap(head, _run(61.0, 5, fused=61.0, main=61.0, teacher=40.0)) is None  # not below
    gap = explain_gap(head, _run(56.8, 5, fused=56.8, main=58.0, teacher=41.0))
    assert gap["message"].startswith("RSKP below head on seed 1 (-3.2 AVG): teacher AVG 41.0 < main 58.0 at epoch 5")
    assert len(gap["findings"]) == 3
    assert "fusing the intra branch at test time costs 1.2" in gap["findings"][1]
    assert "made the head itself worse; cls/main 0.6 vs 0.3 alone" in gap["findings"][2]
    plain = explain_gap(head, _run(59.0, 5, fused=59.0, main=59.0, teacher=70.0))["findings"]
    assert len(plain) == 1 and "made the head itself worse" in plain[0]


def test_metrics_line_without_diagnostics_still_has_the_fused_entry() -> None:
    record = {"epoch": 2, "test": {"tiou": [0.1, 0.5], "map_percent": [10.0, 20.0], "avg_map_percent": 15.0,
                                   "cmap_percent": 70.0, "detections": 3}, "train_loss": 1.0}
    line = metrics_line(record)
    assert line["branches"]["fused"] == {"avg": 15.0, "per_tiou": {"0.1": 10.0, "0.5": 20.0}, "cmap": 70.0,
                                         "detections": 3}
    assert line["branches"]["main"] is None and line["losses"] == {}


def test_collect_branches_reads_the_fused_prediction_like_evaluation(datasets) -> None:
    from rskp_plugin.engine.inference import collect_outputs

    trainer = train_epochs(config("stpn", "rskp.memory.warmup_epochs=0"), datasets, 2)
    kwargs = dict(collate=collate, device=torch.device("cpu"), batch_size=4)
    fused, branches, rule = collect_branches(trainer.model, datasets.test, **kwargs)
    reference = collect_outputs(trainer.model, datasets.test, **kwargs)
    for ours, theirs in zip(fused, reference):
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    assert set(branches) == {"main", "intra", "inter", "teacher"} and rule == "head"
    assert isinstance(trainer.model, RSKPWrapper)
