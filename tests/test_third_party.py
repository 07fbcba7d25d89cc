"""A real third-party head: build a tiny distribution, pip-install it into a temporary directory, and find it.

Nothing in the discovery code is faked: the distribution's ``*.dist-info/entry_points.txt`` is what
``importlib.metadata`` reads once the directory is on ``sys.path``. pip runs offline (``--no-index``, no build
isolation, setuptools from this environment), so the test takes a few seconds. Its names (distribution
``rskp-head-selftest-toy``, module ``rskp_head_selftest_toy``, head ``selftest_toy``) are its own, so a ``toy`` head
installed by following CONTRIBUTING.md changes nothing here.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
from rich.console import Console

from rskp_plugin import cli, plugins
from rskp_plugin.commands import heads as commands_heads
from rskp_plugin.plugins import available_heads, create_head, head_specs
from rskp_plugin.testing import check_head

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "rskp-head-selftest-toy"
version = "0.3.1"
description = "A toy WTAL head for rskp"
dependencies = ["rskp-plugin"]

[project.entry-points.rskp_plugin]
selftest_toy = "rskp_head_selftest_toy"

[tool.setuptools]
py-modules = ["rskp_head_selftest_toy"]
"""

MODULE = '''\
"""rskp_head_selftest_toy: a linear head with a background class, registered through the rskp_plugin entry point."""

import torch
from torch import nn

from rskp_plugin import HeadOutput, HeadSpec
from rskp_plugin.functional import masked_topk_mean, topk_counts
from rskp_plugin.hookspecs import hookimpl


class ToyHead(nn.Module):
    def __init__(self, *, num_classes=20, feature_dim=2048, embed_dim=32):
        super().__init__()
        self.num_classes, self.embed_dim = num_classes, embed_dim
        self.embedding = nn.Linear(feature_dim, embed_dim)
        self.classifier = nn.Linear(embed_dim, num_classes + 1)

    def embed(self, features, mask):
        return torch.relu(self.embedding(features)) * mask[..., None]

    def classify(self, x):
        return self.classifier(x)

    def forward(self, x, mask):
        tcam = self.classify(x)
        video = torch.softmax(masked_topk_mean(tcam, mask, topk_counts(mask, 8)), dim=-1)[:, :-1]
        cas = torch.softmax(tcam, dim=-1)[..., :-1] * mask[..., None]
        return HeadOutput(video, tcam, None, cas, {})

    def classification_loss(self, out, labels, mask):
        target = labels / labels.sum(dim=-1, keepdim=True)
        return -(target * torch.log(out.video_scores.clamp_min(1e-8))).sum(dim=-1).mean()

    def auxiliary_loss(self, out, labels, mask):
        return {}


@hookimpl
def register_heads(register):
    register(HeadSpec(name="selftest_toy", factory=ToyHead,
                      summary="Linear toy head from a third-party distribution."))
'''


@pytest.fixture
def installed_toy(tmp_path, monkeypatch):
    """pip-install rskp-head-selftest-toy into tmp_path/site; yield that directory; undo every global change
    afterwards."""
    src, site = tmp_path / "rskp-head-selftest-toy", tmp_path / "site"
    src.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "rskp_head_selftest_toy.py").write_text(MODULE)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
           "--target", str(site), str(src)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, f"pip failed:\n{result.stdout}\n{result.stderr}"
    assert list(site.glob("rskp_head_selftest_toy-0.3.1.dist-info/entry_points.txt"))
    monkeypatch.setattr(plugins, "_manager", plugins._manager)  # the cached manager comes back afterwards
    monkeypatch.setattr(commands_heads, "console", Console(width=250))
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("rskp_head_selftest_toy", None)
        importlib.invalidate_caches()


@pytest.mark.integration
def test_third_party_head_is_discovered(installed_toy, capsys):
    plugins.refresh()  # what a user does after `pip install` in a running session; a new process needs nothing

    heads = available_heads()
    assert "selftest_toy" in heads and {"bm", "facnet", "stpn", "wum"} <= set(heads) and heads == sorted(heads)
    spec = head_specs()["selftest_toy"]
    assert (spec.plugin, spec.distribution) == ("selftest_toy", "rskp-head-selftest-toy 0.3.1")

    head = create_head("selftest_toy", num_classes=3, feature_dim=8)
    assert type(head).__module__ == "rskp_head_selftest_toy" and head.num_classes == 3 and head.embed_dim == 32
    assert check_head(spec.factory, feature_dim=8)  # the kit a head author runs in their own tests

    assert cli.main(["heads"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if " selftest_toy " in line)
    assert "rskp-head-selftest-toy" in row and "0.3.1" in row
    assert "Linear toy head from a third-party distribution." in row


@pytest.mark.integration
def test_third_party_head_disappears_with_its_directory(installed_toy):
    sys.path.remove(str(installed_toy))
    plugins.refresh()
    before = set(available_heads())  # whatever else this environment has installed
    sys.path.insert(0, str(installed_toy))
    plugins.refresh()
    assert set(available_heads()) == before | {"selftest_toy"}
    sys.path.remove(str(installed_toy))
    try:
        plugins.refresh()
        assert set(available_heads()) == before
    finally:
        sys.path.insert(0, str(installed_toy))  # the fixture removes it again
