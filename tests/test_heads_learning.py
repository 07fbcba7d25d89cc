"""Each head alone learns video-level classification on the synthetic THUMOS14-shaped set in about a second.

Small on purpose: D = 32 features, d = 64, 200 training videos sampled to 64 snippets, 10-20 epochs with Adam,
one thread. The head's own losses only (classification_loss + auxiliary_loss), no RSKP.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rskp_heads.bm
import rskp_heads.facnet
import rskp_heads.stpn
import rskp_heads.wum
from rskp_plugin.data.batching import collate, iterate_batches
from rskp_plugin.data.synthetic import make_synthetic
from rskp_plugin.evaluation.classification import classification_map
from rskp_plugin.plugins import create_head, make_plugin_manager

# name -> (learning rate, epochs, head overrides besides the sizes)
RECIPES = {
    "facnet": (3e-3, 10, {}),
    "bm": (3e-3, 10, {}),
    # STPN's sigmoid + BCE over 20 classes learns more slowly than the softmax heads.
    "stpn": (1e-2, 20, {}),
    # WUM's margin scales with the embedding width by default (12.5 at these 32 dimensions).
    "wum": (3e-3, 10, {}),
}


@pytest.fixture(scope="module")
def data():
    train, test = make_synthetic(seed=0, feature_dim=32, num_train=200, num_test=60, difficulty=0.5)
    return train, collate(list(test), length=64, sampling="uniform")


@pytest.fixture(scope="module")
def pm():
    manager = make_plugin_manager(load_entrypoints=False)
    for module in (rskp_heads.bm, rskp_heads.facnet, rskp_heads.stpn, rskp_heads.wum):
        manager.register(module)
    return manager


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(threads)


def chance_map(labels: np.ndarray) -> float:
    rng = np.random.default_rng(0)
    return float(np.mean([classification_map(rng.random(labels.shape), labels, skip_empty=True) for _ in range(20)]))


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_head_alone_learns_classification(name, data, pm, one_thread):
    train, test = data
    lr, epochs, overrides = RECIPES[name]
    torch.manual_seed(0)
    head = create_head(name, plugin_manager=pm, num_classes=20, feature_dim=32, embed_dim=64, **overrides)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    for epoch in range(epochs):
        for batch in iterate_batches(train, 16, shuffle=True, seed=epoch, length=64, sampling="random"):
            out = head(head.embed(batch.features, batch.mask), batch.mask)
            loss = head.classification_loss(out, batch.labels, batch.mask)
            loss = loss + sum(head.auxiliary_loss(out, batch.labels, batch.mask).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    head.eval()
    with torch.no_grad():
        out = head(head.embed(test.features, test.mask), test.mask)
    labels = test.labels.numpy()
    score, chance = classification_map(out.video_scores, labels, skip_empty=True), chance_map(labels)
    assert chance < 0.15
    assert score > 0.6 and score > 4 * chance, f"{name}: classification mAP {score:.3f}, chance {chance:.3f}"
