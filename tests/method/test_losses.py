"""Distillation (eq. 7) and attention normalisation on hand-computed cases and padded batches."""

import math

import pytest
import torch

from rskp_plugin.method.losses import attention_normalization, distillation, rampup_weight


def test_distillation_hand_computed():
    student = torch.tensor([[[0.0, 0.2], [0.4, 0.0]]])  # (1, 2, 2)
    teacher = torch.tensor([[[0.2, 0.0], [0.0, 0.0]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    tau = 0.2
    expected = 0.0
    for s, u in zip(student[0], teacher[0]):
        p = torch.softmax(u / tau, -1)
        expected += float(-(p * torch.log_softmax(s / tau, -1)).sum())
    assert math.isclose(float(distillation(student, teacher, mask, temperature=tau)), expected / 2, rel_tol=1e-6)


def test_distillation_detaches_teacher_and_ignores_padding():
    s = torch.randn(2, 5, 3, requires_grad=True)
    t = torch.randn(2, 5, 3, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    loss = distillation(s, t, mask)
    loss.backward()
    assert t.grad is None and s.grad[1, 3:].abs().sum() == 0
    alone = distillation(s[1:, :3], t[1:, :3], mask[1:, :3])
    first = distillation(s[:1], t[:1], mask[:1])
    torch.testing.assert_close(loss, (alone + first) / 2)


def test_attention_normalization_hand_computed():
    a = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.8, 0.2, 0.7, 0.4, 0.6, 0.05, 0.95, 0.0, 0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True] * 11 + [False] * 5])
    # 11 real snippets -> k = 11 // 8 = 1: min 0.05, max 0.95
    torch.testing.assert_close(attention_normalization(a, mask), torch.tensor(0.05 - 0.95))
    full = torch.ones(1, 16, dtype=torch.bool)
    # 16 snippets -> k = 2: smallest two are 0, 0; largest two 0.95, 0.9
    torch.testing.assert_close(attention_normalization(a, full), torch.tensor(0.0 - (0.95 + 0.9) / 2))


def test_attention_normalization_one_snippet_video():
    torch.testing.assert_close(
        attention_normalization(torch.tensor([[0.3, 0.9]]), torch.tensor([[True, False]])), torch.tensor(0.0)
    )


def test_teacher_confidence_is_one_for_one_hot_and_zero_for_uniform():
    from rskp_plugin.method.losses import teacher_confidence

    logits = torch.tensor([[[100.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, float("-inf"), 0.0]]])
    conf = teacher_confidence(logits, temperature=1.0)
    torch.testing.assert_close(conf, torch.tensor([[1.0, 0.0, 0.0]]), atol=1e-6, rtol=0)  # -inf takes no part


def test_distillation_weights_scale_each_snippet():
    s, t = torch.randn(1, 4, 3), torch.randn(1, 4, 3)
    mask = torch.ones(1, 4, dtype=torch.bool)
    w = torch.tensor([[1.0, 0.0, 0.5, 0.0]])
    per = [float(distillation(s[:, i : i + 1], t[:, i : i + 1], mask[:, :1])) for i in range(4)]
    expected = (per[0] + 0.5 * per[2]) / 4
    assert math.isclose(float(distillation(s, t, mask, weights=w)), expected, rel_tol=1e-6)


def test_rampup_weight_follows_the_temporal_ensembling_curve():
    assert rampup_weight(0, 0) == 1.0 and rampup_weight(7, 0) == 1.0  # off
    assert rampup_weight(0, 10) == pytest.approx(math.exp(-5.0))
    assert rampup_weight(5, 10) == pytest.approx(math.exp(-1.25))
    assert rampup_weight(10, 10) == 1.0 and rampup_weight(25, 10) == 1.0
    values = [rampup_weight(e, 10) for e in range(12)]
    assert all(a < b for a, b in zip(values[:10], values[1:11]))  # rises to 1
