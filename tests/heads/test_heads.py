"""The four built-in heads against hand-computed values on tiny inputs (T <= 9, 3 classes, fixed weights).

Each reference below is written out independently of the head code (NumPy, plain loops), from docs/heads.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rskp_heads.bm import BMHead
from rskp_heads.facnet import FACNetHead
from rskp_heads.stpn import LOCALIZATION as STPN_RULES, STPNHead
from rskp_heads.wum import LOCALIZATION as WUM_RULES, WUMHead
from rskp_plugin.functional import dropout, masked_gaussian_smooth, relu_dropout
from rskp_plugin.protocols import LocalizationSettings

C = 3


@pytest.fixture(autouse=True)
def _no_grad():
    """Value checks only; the conformance kit (test_head_contract.py) covers gradients."""
    with torch.no_grad():
        yield


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - np.max(z))
    return e / e.sum()


def t64(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=torch.float64)


# ------------------------------------------------------------------------------------------------------ FAC-Net
@pytest.fixture
def facnet() -> FACNetHead:
    head = FACNetHead(num_classes=C, feature_dim=4, embed_dim=4).double().eval()
    with torch.no_grad():
        head.centres.copy_(torch.eye(4, dtype=torch.float64))  # A_c = e_c, background row 3 = e_3
        head.foreground.copy_(-torch.eye(4, dtype=torch.float64)[3:])  # g = -e_3
    return head


FAC_X = np.array([[1.0, 0, 0, 0], [0, 2, 0, 0], [0, 0, 0, 1], [1, 1, 0, 0]])  # (T=4, d=4)


def facnet_reference(x: np.ndarray, s: float = 20.0):
    """docs/heads.md 2.2, one video, written with loops."""
    t_len = len(x)
    eps = 1e-9  # RSKP adds 1e-9 to both norms of the cosine
    unit = x / (np.linalg.norm(x, axis=1, keepdims=True) + eps)
    tcam = s * unit / (1 + eps)  # cos(x_t, e_c) = x_t[c] / |x_t|
    att = np.array([sigmoid(s * -unit[t, 3] / (1 + eps)) for t in range(t_len)])
    cw = sigmoid(tcam)
    att_n = att / (att.sum() + 1e-5)
    cw_n = cw / (cw.sum(axis=0, keepdims=True) + 1e-5)
    v_ca = sum(att_n[t] * x[t] for t in range(t_len))
    ca_logits = s * v_ca / (np.linalg.norm(v_ca) + eps) / (1 + eps)
    cw_logits = np.zeros(4)
    for c in range(4):
        v = sum(cw_n[t, c] * x[t] for t in range(t_len))
        cw_logits[c] = s * v[c] / (np.linalg.norm(v) + eps) / (1 + eps)
    return tcam, att, ca_logits, cw_logits


def test_facnet_forward_matches_hand_computed(facnet):
    x = t64(FAC_X)[None]
    out = facnet(x, torch.ones(1, 4, dtype=torch.bool))
    tcam, att, ca_logits, cw_logits = facnet_reference(FAC_X)
    # Values that need no computer: snippet 0 is class 0 exactly, snippet 2 is pure background.
    np.testing.assert_allclose(out.tcam[0, 0].numpy(), [20, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out.tcam[0, 3].numpy(), [20 / math.sqrt(2), 20 / math.sqrt(2), 0, 0], atol=1e-6)
    assert out.attention[0, 0].item() == pytest.approx(0.5)  # cos(x, -e_3) = 0 -> sigmoid(0)
    assert out.attention[0, 2].item() == pytest.approx(sigmoid(-20.0), rel=1e-6)
    np.testing.assert_allclose(out.tcam[0].numpy(), tcam, atol=1e-9)
    np.testing.assert_allclose(out.attention[0].numpy(), att, atol=1e-12)
    np.testing.assert_allclose(out.extras["ca_logits"][0].numpy(), ca_logits, atol=1e-9)
    np.testing.assert_allclose(out.extras["cw_logits"][0].numpy(), cw_logits, atol=1e-9)
    # Background handling: video scores drop the background column of the (C+1)-way softmax.
    np.testing.assert_allclose(out.video_scores[0].numpy(), softmax(ca_logits)[:3], atol=1e-12)
    # CAS = softmax over C+1 of S, first C columns, times the class-agnostic attention.
    cas = np.stack([softmax(tcam[t])[:3] * att[t] for t in range(4)])
    np.testing.assert_allclose(out.cas[0].numpy(), cas, atol=1e-12)


def test_facnet_losses_match_hand_computed(facnet):
    out = facnet(t64(FAC_X)[None], torch.ones(1, 4, dtype=torch.bool))
    _, _, ca_logits, cw_logits = facnet_reference(FAC_X)
    labels = t64([[1.0, 0.0, 1.0]])
    log_ca, log_cw = np.log(softmax(ca_logits)), np.log(softmax(cw_logits))
    fore = -(log_ca[0] + log_ca[2]) / (2 + 1e-8)  # target [y, 0] normalised (+ 1e-8, official): background excluded
    back = -(log_cw[0] + log_cw[2] + log_cw[3]) / (3 + 1e-8)  # target [y, 1] normalised: background included
    loss = facnet.classification_loss(out, labels, torch.ones(1, 4, dtype=torch.bool))
    assert loss.item() == pytest.approx(fore + 0.2 * back, rel=1e-10)
    assert facnet.auxiliary_loss(out, labels, torch.ones(1, 4, dtype=torch.bool)) == {}


def test_normalised_cross_entropy_adds_1e8_like_the_official_code():
    """FAC-Net's NormalizedCrossEntropy: labels / (labels.sum(1) + 1e-8); BM uses the same form. A row without
    labels contributes 0 (no NaN). rtol 1e-13 tells this from an exact sum (1e-8 relative for a one-label row)."""
    from rskp_heads.bm import softmax_nll
    from rskp_heads.facnet import nce

    logits = np.array([[0.3, -1.2, 2.0, 0.1], [1.0, 0.5, -0.5, 0.0], [0.2, 0.2, 0.2, 0.2]])
    target = np.array([[0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    log_p = [np.log(softmax(row)) for row in logits]
    rows = [-sum(target[b, c] / (target[b].sum() + 1e-8) * log_p[b][c] for c in range(4)) for b in range(3)]
    expected = sum(rows) / 3
    got_nce = nce(torch.log_softmax(t64(logits), dim=-1), t64(target)).item()
    got_bm = softmax_nll(t64(logits), t64(target)).item()
    np.testing.assert_allclose([got_nce, got_bm], [expected, expected], rtol=1e-13)
    exact = sum(-(target[b] / max(target[b].sum(), 1e-12) * log_p[b]).sum() for b in range(3)) / 3
    assert abs(got_nce - exact) > 1e-10 * abs(exact)  # the clamped form is a different number


def test_facnet_fuse_is_the_official_rule(facnet):
    mask = torch.ones(1, 4, dtype=torch.bool)
    main = facnet(t64(FAC_X)[None], mask)
    intra = facnet(t64(FAC_X[::-1].copy())[None], mask)
    fused = facnet.fuse([main, intra], [0.6, 0.4])
    tcam_m, att_m, _, _ = facnet_reference(FAC_X)
    tcam_a, _, _, _ = facnet_reference(FAC_X[::-1])
    psi = np.stack([(0.6 * softmax(tcam_m[t]) + 0.4 * softmax(tcam_a[t]))[:3] * att_m[t] for t in range(4)])
    np.testing.assert_allclose(fused.cas[0].numpy(), psi, atol=1e-12)
    np.testing.assert_allclose(fused.video_scores.numpy(), (0.6 * main.video_scores + 0.4 * intra.video_scores).numpy())
    assert torch.equal(fused.attention, main.attention)


def test_facnet_defaults_are_official():
    head = FACNetHead()
    assert (head.num_classes, head.feature_dim, head.embed_dim, head.scale) == (20, 2048, 2048, 20.0)
    assert head.dropout.p == 0.6 and head.background_weight == 0.2
    assert head.centres.shape == (21, 2048)
    torch.testing.assert_close(head.foreground.detach(), -head.centres.detach()[20:])  # g starts as -A[C]
    assert head.foreground.data_ptr() != head.centres.data_ptr()  # ... and is an independent parameter


# --------------------------------------------------------------------------------------------------------- STPN
def _fix_attention(head, d: int) -> None:
    """attention_hidden = 1: lambda_t = sigmoid(relu(x_t[0]) - 1)."""
    first, second = head.attention[0], head.attention[2]
    first.weight.copy_(torch.eye(1, d, dtype=torch.float64))
    first.bias.zero_()
    second.weight.fill_(1.0)
    second.bias.fill_(-1.0)


STPN_X = np.array([[[2.0, 0, 1], [0, 1, 0], [1, 1, 1], [3, 0, 0]], [[1.0, 2, 0], [0, 0, 3], [9, 9, 9], [9, 9, 9]]])
STPN_MASK = torch.tensor([[True, True, True, True], [True, True, False, False]])
W3 = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, -1, 0.5]])  # (C+1, d) rows; STPN uses the first C
B3 = np.array([0.5, -0.5, 0.0, 0.25])


@pytest.fixture
def stpn() -> STPNHead:
    head = STPNHead(num_classes=C, feature_dim=3, embed_dim=3, attention_hidden=1, pooling="mean").double().eval()
    with torch.no_grad():
        _fix_attention(head, 3)
        head.classifier.weight.copy_(t64(W3[:3]))
        head.classifier.bias.copy_(t64(B3[:3]))
    return head


def test_stpn_forward_and_losses_match_hand_computed(stpn):
    x = t64(STPN_X) * STPN_MASK[..., None]
    out = stpn(x, STPN_MASK)
    labels = t64([[1, 0, 0], [0, 1, 1]])
    bce, sparsity = [], []
    for b, n in enumerate((4, 2)):
        xb = STPN_X[b, :n]
        lam = sigmoid(np.maximum(xb[:, 0], 0) - 1)
        pooled = (lam[:, None] * xb).mean(axis=0)  # the reproduction's temporal mean over the real snippets
        logits = W3[:3] @ pooled + B3[:3]
        np.testing.assert_allclose(out.attention[b, :n].numpy(), lam, atol=1e-12)
        np.testing.assert_allclose(out.video_scores[b].numpy(), sigmoid(logits), atol=1e-12)
        tcam = xb @ W3[:3].T + B3[:3]
        np.testing.assert_allclose(out.tcam[b, :n].numpy(), tcam, atol=1e-12)
        psi = lam[:, None] * sigmoid(xb @ W3[:3].T)  # localisation uses the bias-free T-CAM
        np.testing.assert_allclose(out.cas[b, :n].numpy(), psi, atol=1e-12)
        score = lam[:, None] * (xb @ W3[:3].T)  # proposals are scored on the raw T-CAM weighted by attention
        np.testing.assert_allclose(out.score_cas[b, :n].numpy(), score, atol=1e-12)
        y = labels[b].numpy()
        bce.append(-np.mean(y * np.log(sigmoid(logits)) + (1 - y) * np.log(1 - sigmoid(logits))))
        sparsity.append(np.abs(lam).sum())
    assert out.attention[1, 2:].abs().sum().item() == 0.0  # padding has no attention
    assert stpn.classification_loss(out, labels, STPN_MASK).item() == pytest.approx(np.mean(bce), rel=1e-10)
    aux = stpn.auxiliary_loss(out, labels, STPN_MASK)
    assert set(aux) == {"sparsity"}
    assert aux["sparsity"].item() == pytest.approx(1e-4 * np.mean(sparsity), rel=1e-10)  # beta * mean_B sum_t


def test_stpn_sum_pooling_is_the_paper_variant(stpn):
    stpn.pooling = "sum"
    out = stpn(t64(STPN_X[:1]), torch.ones(1, 4, dtype=torch.bool))
    lam = sigmoid(np.maximum(STPN_X[0, :, 0], 0) - 1)
    logits = W3[:3] @ (lam[:, None] * STPN_X[0]).sum(axis=0) + B3[:3]
    np.testing.assert_allclose(out.extras["video_logits"][0].numpy(), logits, atol=1e-12)


def test_stpn_attention_pooling_normalises_by_the_attention(stpn):
    """The default pooling: sum_t lambda_t x_t / sum_t lambda_t; localisation gates with lambda / max_t lambda."""
    stpn.pooling = "attention"
    x = t64(STPN_X) * STPN_MASK[..., None]
    out = stpn(x, STPN_MASK)
    for b, n in enumerate((4, 2)):
        xb = STPN_X[b, :n]
        lam = sigmoid(np.maximum(xb[:, 0], 0) - 1)
        logits = W3[:3] @ ((lam[:, None] * xb).sum(axis=0) / (lam.sum() + 1e-5)) + B3[:3]
        np.testing.assert_allclose(out.extras["video_logits"][b].numpy(), logits, atol=1e-12)
        gate = lam / lam.max()
        np.testing.assert_allclose(out.cas[b, :n].numpy(), gate[:, None] * sigmoid(xb @ W3[:3].T), atol=1e-12)
        np.testing.assert_allclose(out.score_cas[b, :n].numpy(), gate[:, None] * (xb @ W3[:3].T), atol=1e-12)


def test_stpn_defaults_and_scores():
    head = STPNHead()
    assert (head.num_classes, head.feature_dim, head.embed_dim, head.sparsity_weight) == (20, 2048, 2048, 1e-4)
    assert head.pooling == "attention"  # the reproduction's "mean" saturates lambda (see STPNHead's docstring)
    assert head.attention[0].out_features == 256 and head.classifier.out_features == 20  # no background class
    reps = torch.randn(2, 5, 2048)
    torch.testing.assert_close(head.representative_scores(reps), torch.sigmoid(head.classify(reps)))


# ----------------------------------------------------------------------------------------------------------- BM
@pytest.fixture
def bm() -> BMHead:
    head = BMHead(num_classes=C, feature_dim=3, embed_dim=3, attention_hidden=1).double().eval()
    with torch.no_grad():
        _fix_attention(head, 3)
        head.classifier.weight.copy_(t64(W3))
        head.classifier.bias.copy_(t64(B3))
    return head


def gaussian_smooth_reference(p: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """scipy.ndimage.gaussian_filter1d(p, sigma, axis=0, mode='reflect') written with numpy (radius 4 sigma)."""
    radius = int(4 * sigma + 0.5)
    w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    w /= w.sum()
    padded = np.pad(p, ((radius, radius), (0, 0)), mode="symmetric")  # numpy "symmetric" = scipy "reflect"
    return np.stack([(w[:, None] * padded[t : t + 2 * radius + 1]).sum(axis=0) for t in range(len(p))])


def test_gaussian_smoothing_matches_scipy_reflect():
    p = np.random.default_rng(0).random((7, 4))
    mask = torch.tensor([[True] * 7 + [False] * 3])
    padded = torch.cat([t64(p), t64(np.full((3, 4), 50.0))])[None]
    out = masked_gaussian_smooth(padded, mask, sigma=1.0)
    np.testing.assert_allclose(out[0, :7].numpy(), gaussian_smooth_reference(p), atol=1e-12)
    assert out[0, 7:].abs().sum().item() == 0.0
    # A hole in the mask: the real snippets are smoothed as one sequence.
    holes = torch.tensor([[True, False, True, True, True, False, True, True, True]])
    out = masked_gaussian_smooth(torch.cat([t64(p[:1]), t64(p[:1]) * 0 + 9, t64(p[1:4]), t64(p[:1]) * 0 + 9,
                                            t64(p[4:])])[None], holes, sigma=1.0)
    np.testing.assert_allclose(out[0][holes[0]].numpy(), gaussian_smooth_reference(p), atol=1e-12)


def test_bm_forward_and_losses_match_hand_computed(bm):
    x = t64(STPN_X) * STPN_MASK[..., None]
    out = bm(x, STPN_MASK)
    labels = t64([[1, 0, 0], [0, 1, 1]])
    fg_loss, bg_loss, guide = [], [], []
    for b, n in enumerate((4, 2)):
        xb = STPN_X[b, :n]
        lam = sigmoid(np.maximum(xb[:, 0], 0) - 1)
        x_fg = (lam[:, None] * xb).sum(0) / (lam.sum() + 1)  # DGAM's training normalisation
        x_bg = ((1 - lam)[:, None] * xb).sum(0) / ((1 - lam).sum() + 1e-6)
        fg, bg = W3 @ x_fg + B3, W3 @ x_bg + B3  # (C+1,): background is the last column
        np.testing.assert_allclose(out.extras["fg_logits"][b].numpy(), fg, atol=1e-12)
        np.testing.assert_allclose(out.extras["bg_logits"][b].numpy(), bg, atol=1e-12)
        np.testing.assert_allclose(out.video_scores[b].numpy(), softmax(fg)[:3], atol=1e-12)
        raw = xb @ W3.T  # bias-free T-CAM
        np.testing.assert_allclose(out.cas[b, :n].numpy(), lam[:, None] * sigmoid(raw[:, :3]), atol=1e-12)
        y = labels[b].numpy()
        fg_loss.append(-(y / (y.sum() + 1e-8) * np.log(softmax(fg)[:3])).sum())  # official: + 1e-8
        bg_loss.append(-np.log(softmax(bg)[3]))
        probs = gaussian_smooth_reference(np.stack([softmax(r) for r in raw]))
        g_fg = np.max(probs[:, :3][:, y > 0], axis=1)
        g_bg = 1 - probs[:, 3]
        guide.append(np.mean(np.abs(lam - g_fg) + np.abs(lam - g_bg)))
    loss = bm.classification_loss(out, labels, STPN_MASK)
    assert loss.item() == pytest.approx(np.mean(fg_loss) + 0.03 * np.mean(bg_loss), rel=1e-10)
    aux = bm.auxiliary_loss(out, labels, STPN_MASK)
    assert set(aux) == {"guide"}  # clustering and sparsity are off by default
    assert aux["guide"].item() == pytest.approx(0.1 * np.mean(guide), rel=1e-10)


def test_bm_pooled_logits_follow_from_tcam_and_attention(bm):
    """docs/heads.md 4.3: z_fg = b + sum m a (S - b) / (sum m a + 1), because classify is affine."""
    x = t64(STPN_X) * STPN_MASK[..., None]
    out = bm(x, STPN_MASK)
    m, a, s, bias = STPN_MASK.double(), out.attention, out.tcam, bm.classifier.bias
    z_fg = bias + ((m * a)[..., None] * (s - bias)).sum(1) / ((m * a).sum(1, keepdim=True) + 1)
    z_bg = bias + ((m * (1 - a))[..., None] * (s - bias)).sum(1) / ((m * (1 - a)).sum(1, keepdim=True) + 1e-6)
    torch.testing.assert_close(out.extras["fg_logits"], z_fg)
    torch.testing.assert_close(out.extras["bg_logits"], z_bg)


def test_bm_options_cluster_and_sparsity():
    head = BMHead(num_classes=C, feature_dim=3, embed_dim=3, attention_hidden=1, cluster_weight=0.3,
                  sparsity_weight=0.5).double().eval()
    with torch.no_grad():
        _fix_attention(head, 3)
        head.classifier.weight.copy_(t64(W3))
        head.classifier.bias.copy_(t64(B3))
        head.cluster.weight.copy_(t64([[1.0, 0, 0], [0, 1, 0]]))  # u_fg = x[0], u_bg = x[1]
        head.cluster.bias.zero_()
    xb = STPN_X[0]
    out = head(t64(xb)[None], torch.ones(1, 4, dtype=torch.bool))
    lam = sigmoid(np.maximum(xb[:, 0], 0) - 1)
    x_fg = (lam[:, None] * xb).sum(0) / (lam.sum() + 1)
    x_bg = ((1 - lam)[:, None] * xb).sum(0) / ((1 - lam).sum() + 1e-6)
    d_fg, d_bg = x_fg[0] - x_fg[1], x_bg[0] - x_bg[1]
    aux = head.auxiliary_loss(out, t64([[1, 0, 0]]), torch.ones(1, 4, dtype=torch.bool))
    expected = -np.log(sigmoid(d_fg)) - np.log(sigmoid(-d_bg))
    assert aux["cluster"].item() == pytest.approx(0.3 * expected, rel=1e-10)
    assert aux["sparsity"].item() == pytest.approx(0.5 * lam.sum(), rel=1e-10)


def test_bm_defaults():
    head = BMHead()
    assert (head.background_weight, head.guide_weight, head.cluster_weight, head.sparsity_weight) == (0.03, 0.1, 0, 0)
    assert head.classifier.out_features == 21 and head.cluster is None


# ---------------------------------------------------------------------------------------------------------- WUM
@pytest.fixture
def wum() -> WUMHead:
    head = WUMHead(num_classes=C, feature_dim=3, embed_dim=3, margin=100.0).double().eval()
    with torch.no_grad():
        head.classifier.weight.copy_(torch.eye(3, dtype=torch.float64))  # A = x
    return head


# T = 8: k_act = max(8 // 9, 1) = 1, k_bkg = 8 // 4 = 2. Magnitudes |x_t| = 5, 1, 3, 0.5, 4, 2, 6, 0.25.
WUM_X = np.array([[5.0, 0, 0], [0, 1, 0], [0, 0, 3], [0.5, 0, 0], [0, 4, 0], [0, 0, 2], [6, 0, 0], [0, 0.25, 0]])


def test_wum_topk_pooling_and_selection(wum):
    out = wum(t64(WUM_X)[None], torch.ones(1, 8, dtype=torch.bool))
    # p_act: top-1 per class of A = x -> (6, 4, 3).
    np.testing.assert_allclose(out.video_scores[0].numpy(), softmax(np.array([6.0, 4, 3])), atol=1e-12)
    # Background = the 2 smallest magnitudes: snippets 7 (0.25) and 3 (0.5); A averaged over them.
    np.testing.assert_allclose(out.extras["bkg_scores"][0].numpy(), softmax(np.array([0.25, 0.125, 0])), atol=1e-12)
    assert out.extras["act_feature_norm"].item() == pytest.approx(6.0)  # the top-1 magnitude snippet, |x_6|
    assert out.extras["bkg_feature_norm"].item() == pytest.approx(np.linalg.norm([0.25, 0.125, 0]))
    # Normalised magnitude: mu_act = 6, mu_bkg = (0.5 + 0.25) / 2.
    mags = np.linalg.norm(WUM_X, axis=1)
    m_tilde = np.clip((mags - 0.375) / (6 - 0.375), 0, 1)
    np.testing.assert_allclose(out.attention[0].numpy(), m_tilde, atol=1e-12)
    weighted = np.stack([softmax(WUM_X[t]) * m_tilde[t] for t in range(8)])
    low, high = weighted.min(0), weighted.max(0)
    np.testing.assert_allclose(out.cas[0].numpy(), (weighted - low) / (high - low), atol=1e-12)


def test_wum_k_follows_the_ratios():
    head = WUMHead(num_classes=C, feature_dim=3, embed_dim=3, r_act=4, r_bkg=2).double().eval()
    with torch.no_grad():
        head.classifier.weight.copy_(torch.eye(3, dtype=torch.float64))
    out = head(t64(WUM_X)[None], torch.ones(1, 8, dtype=torch.bool))
    # k_act = 2: class 0 top-2 of (5, 0.5, 6, 0...) = 5.5; class 1 = (4 + 1) / 2; class 2 = (3 + 2) / 2.
    np.testing.assert_allclose(out.video_scores[0].numpy(), softmax(np.array([5.5, 2.5, 2.5])), atol=1e-12)
    # k_bkg = 4 smallest magnitudes: 0.25 (7), 0.5 (3), 1 (1), 2 (5) -> mean A = (0.125, 0.3125, 0.5).
    np.testing.assert_allclose(out.extras["bkg_scores"][0].numpy(), softmax(np.array([0.125, 0.3125, 0.5])))


def test_wum_losses_match_hand_computed(wum):
    mask = torch.ones(1, 8, dtype=torch.bool)
    out = wum(t64(WUM_X)[None], mask)
    labels = t64([[1, 1, 0]])
    p = softmax(np.array([6.0, 4, 3]))
    y = np.array([0.5, 0.5, 0])  # the label is normalised
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert wum.classification_loss(out, labels, mask).item() == pytest.approx(bce, rel=1e-10)
    aux = wum.auxiliary_loss(out, labels, mask)
    um = (max(0.0, 100 - 6.0) + np.linalg.norm([0.25, 0.125, 0])) ** 2
    p_bkg = softmax(np.array([0.25, 0.125, 0]))
    be = -np.mean(np.log(p_bkg) / 3 + (1 - 1 / 3) * np.log(1 - p_bkg))
    assert aux["uncertainty"].item() == pytest.approx(5e-4 * um, rel=1e-10)
    assert aux["background_entropy"].item() == pytest.approx(be, rel=1e-10)


def test_wum_embedding_is_a_k3_convolution_that_ignores_padding():
    head = WUMHead(num_classes=C, feature_dim=2, embed_dim=1).double().eval()
    with torch.no_grad():
        head.embedding.weight.copy_(t64([[[1.0, 10.0, 100.0], [0.0, 0.0, 0.0]]]))  # (d, D, k): taps t-1, t, t+1
        head.embedding.bias.zero_()
    feats = t64([[[1.0, 0], [2, 0], [3, 0], [7, 0]]])
    mask = torch.tensor([[True, True, True, False]])
    x = head.embed(feats, mask)[0, :, 0]
    np.testing.assert_allclose(x.numpy(), [0 + 10 + 200, 1 + 20 + 300, 2 + 30 + 0, 0])  # snippet 3 is padding


def test_wum_magnitude_dropout_only_in_training():
    head = WUMHead(num_classes=C, feature_dim=3, embed_dim=3, dropout=0.0).double()
    x, mask = t64(WUM_X)[None], torch.ones(1, 8, dtype=torch.bool)
    eval_out = head.eval()(x, mask)
    head.train()
    torch.manual_seed(3)
    train_out = head(x, mask)
    assert not torch.allclose(train_out.extras["bkg_scores"], eval_out.extras["bkg_scores"])  # other snippets
    torch.testing.assert_close(train_out.video_scores, eval_out.video_scores)  # top-k on the CAS: unaffected
    head.magnitude_dropout = 0.0
    torch.testing.assert_close(head(x, mask).extras["bkg_scores"], eval_out.extras["bkg_scores"])


def test_wum_defaults():
    head = WUMHead()
    assert (head.r_act, head.r_bkg, head.margin, head.um_weight, head.be_weight) == (9, 4, 100.0, 5e-4, 1.0)
    assert head.dropout.p == 0.7 and head.magnitude_dropout == 0.7
    assert head.embedding.kernel_size == (3,) and head.classifier.bias is None


def test_wum_margin_scales_with_the_embedding_width():
    """The margin bounds a norm that grows as sqrt(d): 100 at the official 2048, 25 at 128; an explicit value wins."""
    assert WUMHead(feature_dim=8, embed_dim=128).margin == pytest.approx(25.0)
    assert WUMHead(feature_dim=8, embed_dim=32).margin == pytest.approx(12.5)
    assert WUMHead(feature_dim=8, embed_dim=128, margin=100).margin == 100.0


# ------------------------------------------------------------------------------------------------- localisation
def test_each_head_carries_its_inference_rules():
    small = {"num_classes": C, "feature_dim": 4, "embed_dim": 4}
    assert FACNetHead(**small).localization == LocalizationSettings()  # RSKP's own code (docs/heads.md 2.5)
    assert STPNHead(**small).localization == STPN_RULES
    wum = WUMHead(**small).localization
    assert wum == WUM_RULES and wum.class_threshold == 0.2 and wum.video_score_weight == 0.2
    bm = BMHead(**small).localization  # DGAM-style (docs/heads.md 4.4)
    assert (bm.thresholds, bm.class_threshold, bm.fallback_argmax) == ((0.03, 0.08), 0.1, True)
    assert (bm.outer_weight, bm.inflation, bm.upsample, bm.nms_threshold, bm.nms_overlap) == (0.3, 0.25, 20, 0.5, "iou")


def test_wum_distils_its_tcam_without_classifier_dropout():
    from rskp_heads.wum import WUMHead

    torch.manual_seed(0)
    x = torch.rand(2, 12, 8)
    mask = torch.ones(2, 12, dtype=torch.bool)
    head = WUMHead(num_classes=3, feature_dim=8, embed_dim=8).train()
    torch.testing.assert_close(head(x, mask).tcam, head.classify(x))  # the dropout-free logits
    noisy = WUMHead(num_classes=3, feature_dim=8, embed_dim=8, distill_dropout=True).train()
    noisy.load_state_dict(head.state_dict())
    assert not torch.allclose(noisy(x, mask).tcam, noisy.classify(x))  # the official dropped-out CAS


def test_embedding_activation_is_relu_dropout_zero_on_padding():
    """relu_dropout: keep rate 1 - p, kept units scaled by 1 / (1 - p), padding zero, eval = ReLU; its gradient is
    the same multiplier (autograd of the masked product it stands for)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(4, 300, 64, generator=g, dtype=torch.float64).requires_grad_()
    mask = torch.arange(300)[None] < torch.tensor([300, 200, 1, 150])[:, None]
    torch.manual_seed(0)
    with torch.enable_grad():  # this file runs under no_grad
        out = relu_dropout(y, 0.6, True, mask)
        weight = torch.randn(y.shape, generator=g, dtype=torch.float64)
        (grad,) = torch.autograd.grad((out * weight).sum(), y)
    real = (y > 0) & mask[..., None]
    kept = out != 0
    assert not bool(kept[~real].any())  # negative units and padding stay zero
    rate = float(kept[real].double().mean())
    assert abs(rate - 0.4) < 0.01  # 4 sigma of a binomial over ~38k units
    torch.testing.assert_close(out[kept], y[kept] / 0.4)
    torch.testing.assert_close(grad, weight * kept / 0.4)
    torch.testing.assert_close(relu_dropout(y, 0.6, False, mask), torch.relu(y) * mask[..., None])
    torch.manual_seed(0)
    again = relu_dropout(y, 0.6, True, mask)
    assert torch.equal(again, out)  # the global seed fixes the draw
    with pytest.raises(ValueError, match="probability"):
        relu_dropout(y, 1.0, True, mask)


def test_dropout_keeps_one_minus_p_scaled_and_is_identity_in_eval():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 100, 50, generator=g).abs() + 0.1
    torch.manual_seed(0)
    out = dropout(x, 0.7, True)
    kept = out != 0
    assert abs(float(kept.float().mean()) - 0.3) < 0.01  # 4 sigma over 40k units
    torch.testing.assert_close(out[kept], x[kept] / 0.3)
    assert dropout(x, 0.7, False) is x and dropout(x, 0.0, True) is x
