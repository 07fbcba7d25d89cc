"""Mixed precision (``train.amp``): bfloat16 autocast trains every head with RSKP and the memory bank on the CPU
(and on CUDA with ``RSKP_TEST_DEVICE=cuda``), close to the float32 run; the config keeps YAML booleans working.

Tiny data (16-d features, 10 videos of 10-40 snippets) as in test_engine.py, so the file runs in seconds.
"""

from __future__ import annotations

import os

import attrs
import numpy as np
import pytest
import torch

from _tiny import tiny_dataset

from rskp_plugin.checkpoint import load_checkpoint, save_checkpoint
from rskp_plugin.config_io import apply_overrides, from_mapping
from rskp_plugin.data import collate
from rskp_plugin.engine import Datasets, ExperimentConfig, Trainer, load_experiment, packaged_configs
from rskp_plugin.errors import ConfigError

HEADS = ("facnet", "stpn", "bm", "wum")

# amp vs float32 after 2 epochs (4 Adam steps at lr 1e-3, memory bank on in epoch 1): the weight difference
# relative to the float32 run's total update. Measured on the CPU: facnet 0.033, stpn 0.056, bm 0.061, wum 0.155;
# the same float32 run at lr x 2 lies 1.0 from it (the control below, which must exceed the bound).
REL_UPDATE_TOL = 0.3
# Per-epoch mean training loss, relative: measured at most 0.3 % (WUM).
REL_LOSS_TOL = 0.01


def _device_param(name: str):
    if name == "cpu":
        return "cpu"
    want = os.environ.get("RSKP_TEST_DEVICE", "cpu") == "cuda"
    reason = "CUDA variant: set RSKP_TEST_DEVICE=cuda on a machine with a CUDA device"
    if want and not torch.cuda.is_available():
        reason = "RSKP_TEST_DEVICE=cuda but torch sees no CUDA device"
    return pytest.param(
        "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not (want and torch.cuda.is_available()), reason=reason)]
    )


DEVICES = [_device_param("cpu"), _device_param("cuda")]


@pytest.fixture(scope="module")
def datasets() -> Datasets:
    return Datasets(train=tiny_dataset(10, 0, "train"), test=tiny_dataset(6, 1, "test"),
                    heldout=tiny_dataset(4, 2, "heldout"), collate=collate)


def config(head: str, device: str, *overrides: str) -> ExperimentConfig:
    """The official recipe on tiny data (16-d embedding, no dropout), memory bank filled after epoch 0."""
    opts = {"embed_dim": 16, "dropout": 0.0}
    if head == "wum":
        opts["magnitude_dropout"] = 0.0
    base = load_experiment(None, values={"head.name": head})  # the head's recipe laid under, as rskp train does
    base = attrs.evolve(base, head=attrs.evolve(base.head, options=opts))
    return apply_overrides(base, [
        "optimizer.lr=1e-3", "optimizer.batch_size=5", "optimizer.accumulation=5", "train.output_dir=''",
        f"train.device={device}", "rskp.memory.warmup_epochs=0", *overrides,
    ])


def train(cfg: ExperimentConfig, datasets: Datasets, epochs: int = 2) -> tuple[Trainer, list[float], list]:
    """Train ``epochs`` epochs as ``Trainer.fit`` does (memory bank filled after warm-up), recording the mean loss
    of each epoch and the dtype of the head's embedding layer output on every training forward."""
    trainer = Trainer(cfg, datasets=datasets, progress=False)
    dtypes: list[torch.dtype] = []
    hook = trainer.model.head.embedding.register_forward_hook(
        lambda module, args, out: dtypes.append(out.dtype) if module.training else None
    )
    losses = []
    try:
        for epoch in range(epochs):
            losses.append(trainer.train_epoch(epoch))
            trainer.epoch += 1
            if trainer.memory_due:
                trainer.initialize_memory()
    finally:
        hook.remove()
    return trainer, losses, dtypes


def weights(trainer: Trainer) -> torch.Tensor:
    """All learnable weights as one float64 vector on the CPU (the memory bank's buffers left out)."""
    return torch.cat([p.detach().double().cpu().flatten() for p in trainer.model.parameters()])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("head", HEADS)
def test_bf16_autocast_trains_close_to_float32(head, device, datasets) -> None:
    """Every head with RSKP, memory bank in use: finite losses, weights moved, close to the float32 run."""
    amp, amp_losses, amp_dtypes = train(config(head, device, "train.amp=bf16"), datasets)
    fp32, fp32_losses, fp32_dtypes = train(config(head, device, "train.amp=off"), datasets)
    assert amp.amp_enabled and not fp32.amp_enabled
    assert amp.model.memory_ready and bool(torch.isfinite(amp.model.memory.scores).all())
    # autocast really was on: the head's first layer computed in bfloat16, and only under amp
    assert amp_dtypes and set(amp_dtypes) == {torch.bfloat16}
    assert fp32_dtypes and set(fp32_dtypes) == {torch.float32}
    assert all(np.isfinite(amp_losses))
    assert all(p.dtype == torch.float32 and bool(torch.isfinite(p).all()) for p in amp.model.parameters())
    np.testing.assert_allclose(amp_losses, fp32_losses, rtol=REL_LOSS_TOL)
    start = weights(Trainer(config(head, device), datasets=datasets, progress=False))
    update = float((weights(fp32) - start).norm())
    assert float((weights(amp) - start).norm()) > 0.5 * update > 0  # amp training moved the weights
    assert float((weights(amp) - weights(fp32)).norm()) < REL_UPDATE_TOL * update
    # the bound can fail: the float32 run at twice the learning rate lies outside it
    faster, _, _ = train(config(head, device, "train.amp=off", "optimizer.lr=2e-3"), datasets)
    assert float((weights(faster) - weights(fp32)).norm()) > REL_UPDATE_TOL * update
    result = amp.evaluate("test")  # evaluation runs under the same autocast
    assert np.isfinite(result.average) and np.isfinite(result.cmap)


@pytest.mark.parametrize("device", DEVICES)
def test_auto_means_bf16_on_cuda_and_float32_on_cpu(device, datasets) -> None:
    trainer, losses, dtypes = train(config("facnet", device), datasets, epochs=1)
    assert trainer.config.train.amp == "auto"
    expected = torch.bfloat16 if device == "cuda" else torch.float32
    assert trainer.amp_enabled == (device == "cuda") and set(dtypes) == {expected}
    assert np.isfinite(losses).all()


def test_amp_values_and_yaml_booleans(tmp_path) -> None:
    assert ExperimentConfig().train.amp == "auto"
    for value, mode in ((True, "bf16"), (False, "off"), ("auto", "auto"), ("bf16", "bf16"), ("off", "off")):
        assert from_mapping(ExperimentConfig, {"train": {"amp": value}}).train.amp == mode
    for text, mode in (("true", "bf16"), ("false", "off"), ("bf16", "bf16"), ("auto", "auto")):
        path = tmp_path / f"amp_{text}.yaml"
        path.write_text(f"train:\n  amp: {text}\n")
        assert load_experiment(path).train.amp == mode
        assert apply_overrides(ExperimentConfig(), [f"train.amp={text}"]).train.amp == mode
    for name in packaged_configs():
        assert load_experiment(name).train.amp == "auto"
    for bad in ("fp16", 1, None):
        with pytest.raises(ConfigError, match="train.amp must be"):
            from_mapping(ExperimentConfig, {"train": {"amp": bad}})


def test_resume_reads_checkpoints_whose_amp_was_a_bool(tmp_path, datasets) -> None:
    """Before it took strings, ``train.amp`` was a bool whose default True meant bf16 on CUDA only ("auto")."""
    for old, mode in ((True, "auto"), (False, "off")):
        out = tmp_path / str(old)
        trainer = Trainer(config("facnet", "cpu", f"train.output_dir={out}", "train.epochs=2"), datasets=datasets,
                          progress=False)
        path = trainer.save(out / "last.pt")
        data = load_checkpoint(path)
        data["config"]["train"]["amp"] = old
        save_checkpoint(path, {**{k: v for k, v in data.items() if k != "format"}, "format_version": 1})
        assert Trainer.resume(path, datasets=datasets, progress=False).config.train.amp == mode
