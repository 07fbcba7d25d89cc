"""``train.ema``: the moving average of the weights is what evaluations score; off changes nothing; resume is exact."""

from __future__ import annotations

import shutil

import attrs
import pytest
import torch
from _tiny import tiny_dataset
from test_engine import config

from rskp_plugin.data import collate
from rskp_plugin.engine import Datasets, Trainer
from rskp_plugin.engine.ema import WeightAverage
from rskp_plugin.engine.predict import load_trained_model
from rskp_plugin.errors import ConfigError


@pytest.fixture(scope="module")
def datasets() -> Datasets:
    return Datasets(train=tiny_dataset(10, 0, "train"), test=tiny_dataset(6, 1, "test"),
                    heldout=tiny_dataset(4, 2, "heldout"), collate=collate)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_off_by_default_and_on_trains_the_same_weights_but_scores_the_average(datasets, tmp_path) -> None:
    cfg = config("facnet", "train.epochs=3", "rskp.memory.warmup_epochs=1", "train.eval_interval=1")
    assert cfg.train.ema == 0.0
    plain = Trainer(cfg, datasets=datasets, progress=False)
    assert plain.ema is None
    fit_plain = plain.fit()
    seen = []  # (the weights each evaluation scored, the average at that time)

    class Watched(Trainer):
        def evaluate(self, which="test", progress=None):
            seen.append((_weights(self.model), {k: v.clone() for k, v in self.ema.params.items()}))
            return super().evaluate(which, progress)

    on = Watched(attrs.evolve(cfg, train=attrs.evolve(cfg.train, ema=0.9, diagnostics=False,
                                                      output_dir=str(tmp_path))), datasets=datasets, progress=False)
    fit_on = on.fit()
    # training is untouched: the same trained weights (and memory bank) bit for bit, the same losses
    a, b = _weights(plain.model), _weights(on.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in fit_plain.history] == [r["train_loss"] for r in fit_on.history]
    # ... but every evaluation (test and held-out) scored the average, which differs from the trained weights
    assert len(seen) == 2 * len(fit_on.history) == 6
    for scored, average in seen:
        assert all(torch.equal(scored[k], v) for k, v in average.items())
    assert any(not torch.equal(b[k], v) for k, v in on.ema.params.items())
    assert on.ema.updates == 3 * 2  # 10 training videos, 5 per optimiser step: 2 updates per epoch
    with on.ema.applied(on.model):
        again = Trainer.evaluate(on, "test").to_dict()
    assert again == fit_on.final["test"]
    assert all(torch.equal(v, _weights(on.model)[k]) for k, v in b.items())  # applied() put the weights back
    # best.pt predicts with the average too
    model, _ = load_trained_model(tmp_path / "best.pt", device="cpu")
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), best["trainer"]["ema"]["params"][name])


def test_resume_with_ema_is_bit_identical(datasets, tmp_path) -> None:
    cfg = config("stpn", "train.epochs=4", "rskp.memory.warmup_epochs=1", "train.ema=0.8",
                 f"train.output_dir={tmp_path / 'run'}")
    Trainer(cfg, datasets=datasets, progress=False).fit(stop_after=2)
    resumed = Trainer.resume(tmp_path / "run" / "last.pt", datasets=datasets, progress=False)
    fit = resumed.fit()
    whole_cfg = attrs.evolve(cfg, train=attrs.evolve(cfg.train, output_dir=str(tmp_path / "whole")))
    whole = Trainer(whole_cfg, datasets=datasets, progress=False)
    fit_whole = whole.fit()
    assert [r["test"] for r in fit.history] == [r["test"] for r in fit_whole.history]
    assert resumed.ema.updates == whole.ema.updates
    assert all(torch.equal(resumed.ema.params[k], whole.ema.params[k]) for k in whole.ema.params)


def test_average_rate_and_config_checks() -> None:
    model = torch.nn.Linear(2, 1)
    ema = WeightAverage(model, 0.999)
    assert ema.rate() == pytest.approx(0.1) and ema.params["weight"] is not model.weight
    with torch.no_grad():
        model.weight.add_(1.0)
    before = ema.params["weight"].clone()
    ema.update(model)
    torch.testing.assert_close(ema.params["weight"], 0.1 * before + 0.9 * model.weight.detach())
    assert ema.updates == 1 and ema.rate() == pytest.approx(2 / 11)
    for bad in ("train.ema=1", "train.ema=-0.1"):
        with pytest.raises(ConfigError, match="train.ema"):
            config("stpn", bad)


def test_a_run_folder_copy_resumes_with_its_average(datasets, tmp_path) -> None:
    cfg = config("facnet", "train.epochs=2", "rskp.memory.warmup_epochs=0", "train.ema=0.5",
                 f"train.output_dir={tmp_path / 'run'}")
    first = Trainer(cfg, datasets=datasets, progress=False)
    first.fit(stop_after=1)
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    resumed = Trainer.resume(tmp_path / "copy" / "last.pt", datasets=datasets, progress=False)
    assert resumed.ema.updates == first.ema.updates > 0
    assert all(torch.equal(resumed.ema.params[k], first.ema.params[k]) for k in first.ema.params)
