"""``rskp train`` / ``rskp predict`` end to end on a tiny synthetic set, and the CLI's error messages."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rskp_plugin import cli
from rskp_plugin.checkpoint import load_checkpoint
from rskp_plugin.commands.train import train_values
from rskp_plugin.data import make_synthetic

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--set", "data.feature_dim=16", "--set", "data.num_train=8", "--set", "data.num_test=4",
    "--set", "head.options={embed_dim: 16}", "--set", "optimizer.lr=1e-3", "--set", "optimizer.accumulation=4",
    "--set", "optimizer.batch_size=4", "--set", "rskp.memory.warmup_epochs=0", "--set", "train.eval_interval=1",
    "--no-progress",
]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # rich wraps long messages at the terminal width


def test_train_resume_predict_end_to_end(tmp_path, capsys) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    code, out, _ = run(capsys, "train", "--config", "quick", "--head", "facnet", "--epochs", "2",
                       "--output-dir", str(straight), *TINY)
    assert code == 0 and "AVG" in out and "best" in out and "last" in out
    assert {p.name for p in straight.iterdir()} >= {"last.pt", "best.pt", "results.json"}

    # A run killed after epoch 1, resumed to epoch 2, ends with the uninterrupted run's weights.
    assert run(capsys, "train", "--config", "quick", "--head", "facnet", "--epochs", "1", "--output-dir",
               str(killed), *TINY)[0] == 0
    code, _, err = run(capsys, "train", "--resume", str(killed / "last.pt"), "--set", "train.epochs=2",
                       "--no-progress")
    assert code == 0 and "after epoch 1" in err
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert json.loads((killed / "results.json").read_text())["final"]["epoch"] == 2

    # Predict on new feature files: one (T, D) array per file.
    _, test = make_synthetic(seed=7, feature_dim=16, num_train=1, num_test=2)
    files = []
    for video in test.videos:
        np.save(tmp_path / f"{video.name}.npy", video.features)
        files.append(str(tmp_path / f"{video.name}.npy"))
    code, out, _ = run(capsys, "predict", "--checkpoint", str(straight / "best.pt"), "--features", *files,
                       "--out", str(tmp_path / "preds.json"))
    assert code == 0 and "detections" in out
    preds = json.loads((tmp_path / "preds.json").read_text())
    assert set(preds) == {"version", "results", "external_data"}
    assert set(preds["results"]) == {v.name for v in test.videos}
    classes = set(a["meta"]["class_names"])
    for video in test.videos:
        for det in preds["results"][video.name]:
            assert det["label"] in classes and 0 <= det["segment"][0] < det["segment"][1]
            # RSKP's localisation stores one snippet past a run (docs/heads.md 2.5), so a segment may end there.
            assert det["segment"][1] <= (video.num_snippets + 1) / test.snippets_per_second + 1e-6

    # ... and score them with 'rskp evaluate' as they are: two videos hold only some of the 20 classes, and the
    # ground truth's taxonomy lists the dataset's classes, so detections of the others are left out, not refused.
    gt = test.ground_truth()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    labels = {a["label"] for v in gt["database"].values() for a in v["annotations"]}
    assert any(d["label"] not in labels for v in preds["results"].values() for d in v)  # the case is exercised
    code, out, _ = run(capsys, "evaluate", "--ground-truth", str(tmp_path / "gt.json"), "--predictions",
                       str(tmp_path / "preds.json"), "--json")
    scores = json.loads(out)
    assert code == 0 and len(scores["map_percent"]) == 7 and all(0 <= m <= 100 for m in scores["map_percent"])


def test_head_alone_flag(tmp_path, capsys) -> None:
    code, out, _ = run(capsys, "train", "--config", "quick", "--head", "stpn", "--no-rskp", "--epochs", "1",
                       "--output-dir", str(tmp_path), *TINY)
    assert code == 0 and "stpn:" in out
    data = load_checkpoint(tmp_path / "last.pt")
    assert data["config"]["rskp_enabled"] is False and not any(k.startswith("memory") for k in data["model"])


def test_missing_data_root(capsys) -> None:
    code, _, err = run(capsys, "train", "--data", "wtalc", "--no-progress")
    assert code == 2 and "--data-root" in err
    code, _, err = run(capsys, "train", "--data", "wtalc", "--data-root", "/no/such/folder", "--no-progress")
    assert code == 2 and "/no/such/folder" in err and "does not exist" in err


def test_unknown_head(capsys) -> None:
    code, _, err = run(capsys, "train", "--head", "wun", "--no-progress", *TINY)
    assert code == 2 and 'Did you mean "wum"' in err


def test_config_typo_names_the_key_and_the_valid_ones(tmp_path, capsys) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  epoch: 3\n")
    code, _, err = run(capsys, "train", "--config", str(path), "--no-progress")
    assert code == 2 and '"train.epoch"' in err and "epochs" in err and "eval_interval" in err
    code, _, err = run(capsys, "train", "--set", "optimizer.learning_rate=1", "--no-progress")
    assert code == 2 and "optimizer.learning_rate" in err


def test_missing_config_lists_packaged_ones(capsys) -> None:
    code, _, err = run(capsys, "train", "--config", "quik", "--no-progress")
    assert code == 2 and "quick" in err and "paper" in err


def test_predict_errors(tmp_path, capsys) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    np.save(tmp_path / "f.npy", np.zeros((5, 16), np.float32))
    code, _, err = run(capsys, "predict", "--checkpoint", str(foreign), "--features", str(tmp_path / "f.npy"),
                       "--out", str(tmp_path / "p.json"))
    assert code == 2 and "not an rskp checkpoint" in err


@pytest.mark.parametrize("command", ["heads", "train", "predict", "evaluate", "bench", "make-synthetic"])
def test_every_command_and_option_is_documented(command) -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    assert sub.description and len(sub.description) > 40
    for action in sub._actions:
        assert action.help and len(action.help) > 10, action.option_strings


# ---------------------------------------------------------------------------------------------- release checks
def _tiny_run(tmp_path, capsys, folder: str = "run", *extra: str) -> tuple[int, str, str]:
    return run(capsys, "train", "--config", "quick", "--head", "facnet", "--epochs", "1", "--output-dir",
               str(tmp_path / folder), *TINY, *extra)


def test_flags_are_typed_values_not_yaml(capsys) -> None:
    from rskp_plugin.engine import load_experiment

    parser = cli.build_parser()
    args = parser.parse_args(["train", "--data-root", "2024", "--output-dir", "yes", "--dataset-name", "null",
                              "--no-rskp"])
    config = load_experiment(None, args.overrides, values=train_values(args))
    assert (config.data.root, config.train.output_dir, config.data.dataset_name) == ("2024", "yes", "null")
    assert config.rskp_enabled is False
    code, _, err = run(capsys, "train", "--set", "train.output_dir=", "--no-progress")
    assert code == 2 and 'has no value' in err and "got None" not in err


def test_error_messages_are_printed_literally(capsys) -> None:
    code, _, err = run(capsys, "train", "--config", "[/data] [start, end].yaml", "--no-progress")
    assert code == 2 and "'[/data] [start, end].yaml' does not exist" in err


def test_config_errors_end_in_one_line_not_a_traceback(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"train:\n  epochs: 3 \xff\n")
    cases = {
        ("--config", str(bad)): "not UTF-8 text",
        ("--seed", "-1"): "train.seed",
        ("--seed", str(2**64)): "train.seed",
        ("--set", "train.tiou=[0.5, x]"): "train.tiou",
        ("--set", "train.tiou=[1.5, -2]"): "train.tiou",
        ("--set", "optimizer.lr=.inf"): "finite",
        ("--set", "data.on_error=ignore"): "on_error",
        ("--device", "cud"): 'train.device (--device) "cud" is not a device',
    }
    for argv, expected in cases.items():
        code, _, err = run(capsys, "train", *argv, "--no-progress")
        assert code == 2 and err.startswith("error:") and expected in err and "Traceback" not in err, argv


def test_head_options_by_key_and_bad_values(tmp_path, capsys) -> None:
    code, _, _ = _tiny_run(tmp_path, capsys, "run", "--set", "head.options.embed_dim=8")
    assert code == 0 and load_checkpoint(tmp_path / "run" / "last.pt")["config"]["head"]["options"]["embed_dim"] == 8
    code, _, err = _tiny_run(tmp_path, capsys, "bad", "--set", "head.options.embed_dim=-3")
    assert code == 2 and 'head "facnet" rejected its options (embed_dim=-3)' in err
    code, _, err = _tiny_run(tmp_path, capsys, "bad", "--set", "head.options.colour=1")
    assert code == 2 and "colour" in err and 'head "facnet"' in err


def test_a_diverging_run_is_a_clear_error(tmp_path, capsys) -> None:
    code, _, err = _tiny_run(tmp_path, capsys, "run", "--set", "optimizer.lr=1e30")
    assert code == 2 and "training diverged in epoch 1" in err
    assert "non-finite terms" in err or "non-finite weights" in err
    assert "--set optimizer.lr=" in err and "Traceback" not in err


def test_second_train_into_a_run_folder_is_refused_unless_overwrite(tmp_path, capsys) -> None:
    assert _tiny_run(tmp_path, capsys)[0] == 0
    before = (tmp_path / "run" / "results.json").read_bytes()
    code, _, err = run(capsys, "train", "--config", "quick", "--head", "stpn", "--epochs", "1", "--output-dir",
                       str(tmp_path / "run"), *TINY)
    assert code == 2 and str(tmp_path / "run") in err and "--overwrite" in err and "--output-dir" in err
    assert (tmp_path / "run" / "results.json").read_bytes() == before
    code, _, _ = run(capsys, "train", "--config", "quick", "--head", "stpn", "--epochs", "1", "--output-dir",
                     str(tmp_path / "run"), "--overwrite", *TINY)
    assert code == 0 and load_checkpoint(tmp_path / "run" / "best.pt")["config"]["head"]["name"] == "stpn"


def test_default_run_folders_and_the_readme_commands(tmp_path, capsys, monkeypatch) -> None:
    """README's command lines, as written there, on tiny sizes: runs/quick-wum, then resume and predict from it."""
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "train", "--config", "quick", "--head", "wum", "--epochs", "1", *TINY)[0] == 0
    assert run(capsys, "train", "--config", "quick", "--head", "wum", "--no-rskp", "--epochs", "1", *TINY)[0] == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["quick-wum", "quick-wum-norskp"]
    code, _, err = run(capsys, "train", "--resume", "runs/quick-wum/last.pt", "--set", "train.epochs=2",
                       "--no-progress")
    assert code == 0 and "after epoch 1" in err and load_checkpoint("runs/quick-wum/last.pt")["epoch"] == 2
    np.save("video.npy", np.zeros((20, 16), np.float32))
    code, out, _ = run(capsys, "predict", "--checkpoint", "runs/quick-wum/best.pt", "--features", "video.npy",
                       "--out", "preds.json")
    assert code == 0 and "written to preds.json" in out
    readme = (ROOT / "README.md").read_text()
    for line in ("rskp train --config quick --head wum", "rskp train --resume runs/quick-wum/last.pt",
                 "rskp predict --checkpoint runs/quick-wum/best.pt --features video.npy --out preds.json"):
        assert line in readme


def test_resume_with_a_config_that_differs_is_refused(tmp_path, capsys) -> None:
    assert _tiny_run(tmp_path, capsys)[0] == 0
    code, _, err = run(capsys, "train", "--resume", str(tmp_path / "run"), "--config", "paper", "--no-progress")
    assert code == 2 and "differs from --config" in err and "data.feature_dim: 16 in the checkpoint" in err
    # the same config and options as the run: consistent, so it resumes
    code, _, err = run(capsys, "train", "--resume", str(tmp_path / "run"), "--config", "quick", "--head", "facnet",
                       "--epochs", "2", *TINY)
    assert code == 0 and "after epoch 1" in err


def test_ctrl_c_prints_the_last_checkpoint_and_the_resume_command(tmp_path, capsys, monkeypatch) -> None:
    from rskp_plugin.engine import Trainer

    train_epoch = Trainer.train_epoch

    def interrupted_in_epoch_2(self, epoch, progress=None):
        if epoch == 1:
            raise KeyboardInterrupt
        return train_epoch(self, epoch, progress)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted_in_epoch_2)
    code, _, err = run(capsys, "train", "--config", "quick", "--head", "facnet", "--epochs", "3", "--output-dir",
                       str(tmp_path / "run"), *TINY)
    last = tmp_path / "run" / "last.pt"
    assert code == 130 and "interrupted in epoch 2" in err and f"the last checkpoint is {last} (after epoch 1)" in err
    assert f"continue with: rskp train --resume {last}" in err
    monkeypatch.undo()
    assert run(capsys, "train", "--resume", str(last), "--no-progress")[0] == 0
    assert load_checkpoint(last)["epoch"] == 3


def test_predict_output_checks(tmp_path, capsys, monkeypatch) -> None:
    assert _tiny_run(tmp_path, capsys)[0] == 0
    features = tmp_path / "video.npy"
    np.save(features, np.ones((20, 16), np.float32))
    original = features.read_bytes()
    checkpoint = str(tmp_path / "run" / "best.pt")
    (tmp_path / "a_file").write_text("x")
    cases = {
        str(features): "is an input",
        str(tmp_path / "run" / "best.pt"): "is an input",
        str(tmp_path / "run"): "is a folder",
        str(tmp_path / "a_file" / "p.json"): "which is a file",
    }
    for out, expected in cases.items():
        code, _, err = run(capsys, "predict", "--checkpoint", checkpoint, "--features", str(features), "--out", out)
        assert code == 2 and expected in err, out
    assert features.read_bytes() == original
    code, _, err = run(capsys, "predict", "--checkpoint", str(tmp_path / "run"), "--features", str(tmp_path),
                       "--out", str(features))  # a .npy in a feature folder is an input too
    assert code == 2 and "is an input" in err
    for size in ("0", "-3"):
        code, _, err = run(capsys, "predict", "--checkpoint", checkpoint, "--features", str(features), "--out",
                           str(tmp_path / "p.json"), "--batch-size", size)
        assert code == 2 and f"--batch-size must be at least 1 (videos per forward pass), got {size}" in err
    code, _, err = run(capsys, "predict", "--checkpoint", checkpoint, "--features", str(features), "--out",
                       str(tmp_path / "p.json"), "--device", "nonsense")
    assert code == 2 and '--device "nonsense" is not a device' in err and "train.device" not in err

    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    code, _, err = run(capsys, "predict", "--checkpoint", checkpoint, "--features", str(features), "--out",
                       str(tmp_path / "p.json"))
    assert code == 2 and "the file system is read-only" in err
    code, _, err = _tiny_run(tmp_path, capsys, "other")
    assert code == 2 and "the file system is read-only" in err


def test_a_checkpoint_of_a_head_that_is_not_installed(tmp_path, capsys) -> None:
    assert _tiny_run(tmp_path, capsys)[0] == 0
    data = load_checkpoint(tmp_path / "run" / "best.pt")
    assert data["meta"]["head"]["name"] == "facnet" and data["meta"]["head"]["distribution"] == "rskp-plugin"
    data["config"]["head"]["name"] = "ghost"
    data["meta"]["head"] = {"name": "ghost", "distribution": "rskp-head-ghost", "version": "2.0"}
    torch.save(data, tmp_path / "ghost.pt")
    np.save(tmp_path / "v.npy", np.zeros((20, 16), np.float32))
    code, _, err = run(capsys, "predict", "--checkpoint", str(tmp_path / "ghost.pt"), "--features",
                       str(tmp_path / "v.npy"), "--out", str(tmp_path / "p.json"))
    assert code == 2 and "pip install 'rskp-head-ghost==2.0'" in err
    code, _, err = run(capsys, "train", "--resume", str(tmp_path / "ghost.pt"), "--no-progress")
    assert code == 2 and "pip install 'rskp-head-ghost==2.0'" in err


def test_make_synthetic_seed_out_of_range(tmp_path, capsys) -> None:
    for seed in ("-1", str(2**64)):
        code, _, err = run(capsys, "make-synthetic", "--out", str(tmp_path), "--seed", seed)
        assert code == 2 and f"--seed must be an integer from 0 to 2**64 - 1, got {seed}" in err


def test_version(capsys) -> None:
    import rskp_plugin

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"rskp (rskp-plugin) {rskp_plugin.__version__}, torch {torch.__version__}\n"


def test_threads_flag_sets_the_config(tmp_path) -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--threads", "2"])
    assert train_values(args)["train.threads"] == 2


def test_a_format_1_checkpoint_rebuilds_the_model_it_was_trained_as(tmp_path, capsys) -> None:
    """Before format 2 every head weight was shared with the propagated branches and every head distilled: such a
    FAC-Net checkpoint (no branch copy of its attention centre) loads as that model, not as today's default."""
    from rskp_plugin.checkpoint import save_checkpoint
    from rskp_plugin.engine.predict import load_trained_model

    code, _, _ = _tiny_run(tmp_path, capsys, "run", "--set", "rskp.propagation.branch_parameters=[]")
    assert code == 0
    data = load_checkpoint(tmp_path / "run" / "last.pt")
    assert not any(k.startswith("branch_weights") for k in data["model"])
    del data["config"]["rskp"]["propagation"]["branch_parameters"], data["config"]["rskp"]["teacher"]["distill"]
    old = save_checkpoint(tmp_path / "old.pt", {**data, "format_version": 1})
    model, _ = load_trained_model(old, device="cpu")
    assert model.branch_names == [] and model.config.teacher.distill


def test_a_format_2_checkpoint_gets_the_values_its_head_declared_then(tmp_path, capsys) -> None:
    """Up to format 2 the stored config held None for "the head's class attribute": such an STPN checkpoint loads
    with STPN's declarations of that time (tau 1, no distillation, its attention copied, no L_att)."""
    from rskp_plugin.checkpoint import save_checkpoint
    from rskp_plugin.engine.predict import load_trained_model

    values = {"losses.distillation_temperature": 1.0, "teacher.distill": False,
              "propagation.branch_parameters": ["attention"], "losses.attention_normalization": 0.0}
    code, _, _ = _tiny_run(tmp_path, capsys, "run", "--head", "stpn", "--set", "head.recipe=none",
                           *[a for k, v in values.items() for a in ("--set", f"rskp.{k}={v}")])
    assert code == 0
    data = load_checkpoint(tmp_path / "run" / "last.pt")
    rskp = data["config"]["rskp"]
    rskp["losses"]["distillation_temperature"] = rskp["teacher"]["distill"] = None
    rskp["propagation"]["branch_parameters"] = rskp["propagation"]["head_gradient"] = None
    rskp["losses"]["attention_normalization"] = 0.1  # the trait, not the number, switched it off then
    rskp["teacher"]["label_mask"] = False
    old = save_checkpoint(tmp_path / "old.pt", {**data, "format_version": 2})
    model, _ = load_trained_model(old, device="cpu")
    c = model.config
    assert (c.losses.distillation_temperature, c.teacher.distill, c.propagation.branch_parameters,
            c.losses.attention_normalization, c.propagation.head_gradient) == (1.0, False, ("attention",), 0.0, True)
    rskp["teacher"]["label_mask"] = True  # a run trained with the removed option is refused with the reason
    with pytest.raises(Exception, match="label_mask=true, which rskp-plugin no longer has"):
        load_trained_model(save_checkpoint(tmp_path / "masked.pt", {**data, "format_version": 2}), device="cpu")


def test_the_dataset_name_is_found_when_the_folder_holds_one_features_file(tmp_path, capsys) -> None:
    from rskp_plugin.engine import load_experiment
    from rskp_plugin.errors import ConfigError

    data = tmp_path / "data"
    assert cli.main(["make-synthetic", "--out", str(data), "--dataset-name", "MySet", "--feature-dim", "16",
                     "--num-train", "6", "--num-test", "3"]) == 0
    config = load_experiment(None, values={"data.source": "wtalc", "data.root": str(data)})
    assert config.data.dataset_name == "MySet"  # no --dataset-name needed
    explicit = load_experiment(None, values={"data.source": "wtalc", "data.root": str(data),
                                             "data.dataset_name": "Other"})
    assert explicit.data.dataset_name == "Other"  # a name given is kept (the loader names the missing file)
    (data / "Second-I3D-JOINTFeatures.npy").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"several datasets \(MySet, Second\); choose one with --dataset-name"):
        load_experiment(None, values={"data.source": "wtalc", "data.root": str(data)})


def test_a_run_says_what_rskp_does_when_and_warns_when_the_bank_never_fills(tmp_path, capsys) -> None:
    code, _, err = _tiny_run(tmp_path, capsys, "run")  # --epochs 1 with the warm-up set to 0
    text = " ".join(err.split())
    assert code == 0 and "memory bank and inter-video walk from epoch 2" in text and "recipe: builtin" in text
    code, _, err = _tiny_run(tmp_path, capsys, "short", "--set", "rskp.memory.warmup_epochs=5")
    text = " ".join(err.split())
    assert code == 0 and "the inter-video branch never runs" in text and "never reach full weight" in text


def test_a_set_typo_gets_a_suggestion() -> None:
    from rskp_plugin.config_io import apply_overrides
    from rskp_plugin.engine import ExperimentConfig
    from rskp_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match='Unknown config key "train.epoch". Did you mean "epochs"'):
        apply_overrides(ExperimentConfig(), ["train.epoch=3"])


def test_ctrl_c_before_the_first_checkpoint_says_how_to_start_again(tmp_path, capsys, monkeypatch) -> None:
    from rskp_plugin.engine import Trainer

    def interrupted_at_once(self, epoch, progress=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_epoch", interrupted_at_once)
    folder = str(tmp_path / "run")
    code, _, err = run(capsys, "train", "--config", "quick", "--head", "facnet", "--epochs", "2", "--output-dir",
                       folder, *TINY)
    assert code == 130 and "start the run again with --overwrite" in " ".join(err.split())
    monkeypatch.undo()
    assert run(capsys, "train", "--config", "quick", "--head", "facnet", "--epochs", "1", "--output-dir", folder,
               "--overwrite", *TINY)[0] == 0  # what the message says works


def test_not_on_a_terminal_a_run_prints_one_plain_line_per_evaluation(tmp_path) -> None:
    import io

    from rich.console import Console

    from rskp_plugin.engine import Trainer, load_experiment

    config = load_experiment("quick", [a for a in TINY if "=" in a] + ["train.epochs=2", "train.output_dir=''"],
                             values={"head.name": "facnet"})
    log = io.StringIO()
    Trainer(config, progress=True, console=Console(file=log, force_terminal=False, width=200)).fit()
    lines = [line for line in log.getvalue().splitlines() if line.startswith("epoch ")]
    assert [line.split(",")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("test AVG" in line and "held-out AVG" in line and "selected on heldout" in line for line in lines)
    assert "\x1b" not in log.getvalue() and "━" not in log.getvalue()  # no bar drawn


def test_an_option_the_head_does_not_take_is_named_with_how_to_drop_it(capsys) -> None:
    from rskp_plugin.engine import load_experiment
    from rskp_plugin.engine.build import build_model
    from rskp_plugin.errors import ConfigError

    config = load_experiment("quick", ["head.options.width=3"], values={"head.name": "facnet"})
    with pytest.raises(ConfigError, match=r"The head takes no 'width': remove head.options.width from your config file or --set"):
        build_model(config, num_classes=3, feature_dim=16)
