"""The example third-party heads of ``benchmarks/example_heads``: installed as their own distributions, found through
their entry points, conforming to the Head protocol and trained inside ``RSKPWrapper``.

Each distribution is pip-installed once for the module, offline (``--no-index``, no build isolation, setuptools from
this environment), into a temporary directory put on ``sys.path``, as ``tests/test_third_party.py`` installs its
toy head; the source folder is copied first so that the build leaves nothing in the repository.
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _tiny import config, tiny_dataset, train_epochs

from rskp_plugin import RSKPWrapper, plugins
from rskp_plugin.data import collate
from rskp_plugin.engine import Datasets
from rskp_plugin.protocols import RECIPE_ATTRIBUTES
from rskp_plugin.plugins import available_heads, create_head, head_specs
from rskp_plugin.testing import check_head

EXAMPLES = Path(__file__).resolve().parents[2] / "benchmarks" / "example_heads"
HEADS = ("bas", "mil")
# small sizes for the checks; every other argument is the head's default (its paper's value)
SMALL = {"mil": {"embed_dim": 16}, "bas": {"embed_dim": 16, "filter_dim": 8}}
# the settings RSKP reads from a head that chooses them; the examples choose none of them
RSKP_SETTINGS = tuple(RECIPE_ATTRIBUTES)  # settings that belong in a recipe, never on the class

pytestmark = pytest.mark.integration


def _install(name: str, tmp: Path) -> Path:
    """pip-install ``rskp-head-<name>`` from a copy of its folder into ``tmp/site-<name>``; return that directory."""
    src, site = tmp / f"rskp-head-{name}", tmp / f"site-{name}"
    shutil.copytree(EXAMPLES / f"rskp-head-{name}", src)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
           "--target", str(site), str(src)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, f"pip failed for rskp-head-{name}:\n{result.stdout}\n{result.stderr}"
    assert list(site.glob(f"rskp_head_{name}-0.1.0.dist-info/entry_points.txt"))
    return site


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Install both examples, rediscover plugins as a user does after ``pip install``; undo every global change
    afterwards (``sys.path``, imported modules, the cached plugin manager)."""
    tmp = tmp_path_factory.mktemp("example_heads")
    sites = [str(_install(name, tmp)) for name in HEADS]
    manager = plugins._manager
    sys.path[:0] = sites
    importlib.invalidate_caches()
    try:
        plugins.refresh()
        yield sites
    finally:
        for site in sites:
            sys.path.remove(site)
        for name in HEADS:
            sys.modules.pop(f"rskp_head_{name}", None)
        importlib.invalidate_caches()
        plugins._manager = manager  # the manager cached before, or None: rediscovered on next use


@pytest.fixture(scope="module")
def datasets() -> Datasets:
    return Datasets(train=tiny_dataset(12, 0, "train"), test=tiny_dataset(6, 1, "test"),
                    heldout=tiny_dataset(4, 2, "heldout"), collate=collate)


@pytest.mark.parametrize("name", HEADS)
def test_example_head_is_found_through_its_entry_point(name, installed) -> None:
    assert name in available_heads()  # whatever else is installed: the other plugins are test_third_party's concern
    spec = head_specs()[name]
    assert (spec.plugin, spec.distribution) == (name, f"rskp-head-{name} 0.1.0")
    head = create_head(name, num_classes=3, feature_dim=8, **SMALL[name])
    assert type(head).__module__ == f"rskp_head_{name}"
    assert str(Path(sys.modules[f"rskp_head_{name}"].__file__).parent) in installed  # the installed copy
    assert (head.num_classes, head.embed_dim) == (3, 16)
    assert not [s for s in RSKP_SETTINGS if hasattr(head, s)]
    # BaS-Net has its own attention norm: its recipe switches RSKP's L_att off; the MIL head declares nothing
    assert dict(spec.recipe) == ({} if name == "mil" else {"losses.attention_normalization": 0.0})


@pytest.mark.parametrize("name", HEADS)
def test_example_head_passes_the_conformance_kit(name, installed) -> None:
    assert check_head(functools.partial(head_specs()[name].factory, **SMALL[name]), feature_dim=8)


def _topk_mean(tcam: torch.Tensor, length: int) -> torch.Tensor:
    """Reference top-k mean of one video: tcam (T, K) of which the first ``length`` snippets are real -> (K,)."""
    k = max(length // 8, 1)
    return tcam[:length].sort(dim=0, descending=True).values[:k].mean(dim=0)


def test_mil_loss_is_wtalc_multiple_instance_loss(installed) -> None:
    """W-TALC's MILL, one video at a time: -sum(labels / sum(labels) * log_softmax(top-k mean of the T-CAM))."""
    head = create_head("mil", num_classes=3, feature_dim=8, embed_dim=16).double().eval()
    lengths, mask = [17, 9], torch.tensor([[True] * 17, [True] * 9 + [False] * 8])
    out = head(torch.randn(2, 17, 16, dtype=torch.float64).relu(), mask)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    expected = torch.stack([
        -(labels[i] / labels[i].sum() * torch.log_softmax(_topk_mean(out.tcam[i], n), dim=0)).sum()
        for i, n in enumerate(lengths)
    ]).mean()
    torch.testing.assert_close(head.classification_loss(out, labels, mask), expected)
    torch.testing.assert_close(out.video_scores[1], torch.softmax(_topk_mean(out.tcam[1], 9), dim=0))


def test_bas_losses_are_basnet_losses(installed) -> None:
    """BaS-Net's loss, one video at a time with torch's own BCELoss: BCE(softmax(top-k mean of the base T-CAM),
    labels + background 1) + BCE(softmax(top-k mean of a x T-CAM), labels + background 0), both normalised; and
    alpha times the L1 norm of a."""
    head = create_head("bas", num_classes=3, feature_dim=8, embed_dim=16, filter_dim=8).double().eval()
    lengths, mask = [17, 9], torch.tensor([[True] * 17, [True] * 9 + [False] * 8])
    out = head(torch.randn(2, 17, 16, dtype=torch.float64).relu(), mask)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    bce = torch.nn.BCELoss()
    per_video, norms = [], []
    for i, n in enumerate(lengths):
        a = out.attention[i, :n]
        base = torch.softmax(_topk_mean(out.tcam[i], n), dim=0)
        supp = torch.softmax(_topk_mean(a[:, None] * out.tcam[i, :n], n), dim=0)
        with_bg, without_bg = torch.cat([labels[i], labels[i, :1] * 0 + 1]), torch.cat([labels[i], labels[i, :1] * 0])
        per_video.append(bce(base, with_bg / with_bg.sum()) + bce(supp, without_bg / without_bg.sum()))
        norms.append(a.abs().sum())
    torch.testing.assert_close(head.classification_loss(out, labels, mask), torch.stack(per_video).mean())
    torch.testing.assert_close(head.auxiliary_loss(out, labels, mask), {"norm": 1e-4 * torch.stack(norms).mean()})
    assert out.tcam.shape == (2, 17, 4) and out.video_scores.shape == (2, 3)


@pytest.mark.parametrize("name", HEADS)
def test_example_head_trains_inside_rskp(name, installed, datasets) -> None:
    """Full-batch steps of RSKPWrapper(head) with the head's own dropout, the memory bank filled after 10: every
    loss and gradient finite, RSKP's inter branch on once the bank is ready, and the head's loss falls."""
    torch.manual_seed(0)
    model = RSKPWrapper(create_head(name, num_classes=3, feature_dim=16, **SMALL[name]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = collate(datasets.train.videos)
    features, mask = torch.as_tensor(batch.features), torch.as_tensor(batch.mask)
    labels = torch.as_tensor(batch.labels).float()
    head_loss = []
    for step in range(30):
        if step == 10:
            model.initialize_memory([(features, mask, labels)])
        out = model(features, mask, labels)
        assert torch.isfinite(out.loss) and all(torch.isfinite(v) for v in out.losses.values()), out.losses
        assert ("cls/inter" in out.losses) == (step >= 10)
        optimizer.zero_grad()
        out.loss.backward()
        grads = [p.grad for p in model.head.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        optimizer.step()
        head_loss.append(float(out.losses["cls/main"].detach()))
    assert sum(head_loss[-5:]) < 0.9 * sum(head_loss[:5]), head_loss


@pytest.mark.parametrize("name", HEADS)
def test_example_head_trains_and_evaluates_by_name(name, installed, datasets) -> None:
    """What ``rskp train --head <name>`` runs: the engine builds the head by name, fills the memory bank after the
    first epoch, and localises with the head's own settings."""
    trainer = train_epochs(config(name, "rskp.memory.warmup_epochs=0", **SMALL[name]), datasets, 2)
    assert type(trainer.model.head).__module__ == f"rskp_head_{name}" and trainer.model.memory_ready
    result = trainer.evaluate("test")
    assert 0.0 <= result.average <= 100.0 and 0.0 <= result.cmap <= 100.0
