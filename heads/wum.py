"""WUM: weakly supervised action localisation by uncertainty modeling (Lee, Uh, Byun, AAAI 2021; docs/heads.md 5).

Background snippets are treated as out-of-distribution samples: the feature magnitude ||X_t|| (inverse uncertainty)
must be large on action snippets and small on background snippets (L_um), background snippets must give a uniform
class distribution (L_be), and the video is classified by top-k pooling of the class activation sequence (L_cls).

Symbols: B batch, T snippets, D input feature size, d embedding size, C action classes (no background class).
"""

from __future__ import annotations

from importlib import resources

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rskp_plugin.functional import dropout, masked_topk_mean, topk_counts
from rskp_plugin.hookspecs import hookimpl
from rskp_plugin.protocols import HeadOutput, HeadSpec, LocalizationSettings
from rskp_plugin.recipes import read_recipe
from rskp_plugin.shapes import as_mask, expect


#: Official inference (docs/heads.md 5.4): 10 CAS, 9 magnitude thresholds, OIC + 0.2 video score, IoU-NMS 0.6.
LOCALIZATION = LocalizationSettings(
    thresholds=tuple(round(0.025 * i, 6) for i in range(10)),
    attention_thresholds=tuple(round(0.4 + 0.025 * i, 6) for i in range(9)),
    class_threshold=0.2,
    fallback_argmax=True,
    min_length=2,
    video_score_weight=0.2,
    inner_includes_next=False,
    nms_threshold=0.6,
    nms_overlap="iou",
    upsample=24,
    strict=False,
    zero_below_threshold=True,
    nms_units="seconds",
)


def minmax_normalize(x: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """WUM's min-max normalisation: clip((x - relu(low)) / range, 0, 1), range = relu(high) - relu(low), 0 -> 1.

    Shapes: x (B, T, ...), low and high broadcastable to x.
    """
    low, high = torch.relu(low), torch.relu(high)
    span = high - low
    span = torch.where(span <= 0, torch.ones_like(span), span)
    return ((x - low) / span).clamp(0, 1)


def topk_selection(score: Tensor, mask: Tensor, k: Tensor) -> Tensor:
    """Indicator of each video's k highest-scoring real snippets. score (B, T), mask (B, T), k (B,) -> (B, T) 0/1."""
    filled = score.masked_fill(~mask, float("-inf"))
    kmax = int(k.max())
    idx = filled.topk(kmax, dim=1).indices  # (B, kmax)
    keep = (torch.arange(kmax, device=score.device)[None, :] < k[:, None]).to(score.dtype)  # (B, kmax)
    return torch.zeros_like(score).scatter(1, idx, keep)


class WUMHead(nn.Module):
    """WUM's model on top of its own embedding.

    Layers (docs/heads.md 5.1): embedding Conv1d(D, d, kernel 3, padding 1) + ReLU; classifier Dropout(0.7) then a 1x1
    convolution d -> C without bias. PyTorch default initialisation, as in the official code.

    Args:
        num_classes: C action classes.
        feature_dim: D of the input features.
        embed_dim: d of the embedding (official 2048).
        dropout: dropout before the classifier (0.7).
        r_act: k_act = max(len // r_act, 1) snippets pool the action score (9).
        r_bkg: k_bkg = max(len // r_bkg, 1) background snippets (4).
        magnitude_dropout: training-time dropout of the magnitude-based snippet selection (0.7).
        margin: m of L_um. None (default): 100 x sqrt(embed_dim / 2048), the official 100 at the official width.
            The margin bounds the norm of a mean embedding, which grows as sqrt(d) for a fixed per-channel scale;
            the unscaled 100 on a 128-d embedding asks every action snippet for 4x the official per-channel
            activation, and L_um then dominates training (WUM alone on the speech development set: 7.5 AVG with
            100, 22.6 with 25; benchmarks/RESULTS.md, "WUM's margin").
        um_weight: alpha, weight of L_um (5e-4).
        be_weight: beta, weight of L_be (1).
        distill_dropout: if False (default), ``tcam`` — the logits RSKP distils — is computed from the features
            without the classifier dropout, while WUM's own pooling keeps the official dropped-out CAS. With 0.7
            dropout drawn independently for the main and intra branches, the distillation teacher is mostly noise
            and drags every snippet's class distribution to uniform (benchmarks/RESULTS.md). True uses the
            dropped-out CAS for both.
    """

    def __init__(
        self,
        *,
        num_classes: int = 20,
        feature_dim: int = 2048,
        embed_dim: int = 2048,
        dropout: float = 0.7,
        r_act: int = 9,
        r_bkg: int = 4,
        magnitude_dropout: float = 0.7,
        margin: float | None = None,
        um_weight: float = 5e-4,
        be_weight: float = 1.0,
        distill_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.embed_dim = embed_dim
        self.r_act = r_act
        self.r_bkg = r_bkg
        self.magnitude_dropout = magnitude_dropout
        self.margin = 100.0 * math.sqrt(embed_dim / 2048) if margin is None else float(margin)
        self.um_weight = um_weight
        self.be_weight = be_weight
        self.distill_dropout = distill_dropout
        self.embedding = nn.Conv1d(feature_dim, embed_dim, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, num_classes, bias=False)  # = Conv1d(d, C, 1, bias=False)
        self.localization = LOCALIZATION

    def embed(self, features: Tensor, mask: Tensor) -> Tensor:
        """X = ReLU(Conv1d_k3(F)), zero on padding. features (B, T, D), mask (B, T) -> (B, T, d).

        Padded snippets are zeroed before the convolution, so the last real snippet sees the same zero neighbour as
        the convolution's own padding of the unpadded video.
        """
        sizes = expect(features, "B T D", name="features", sizes={"D": self.feature_dim})
        mask = as_mask(mask, sizes["B"], sizes["T"], features.device)
        m = mask[..., None].to(features.dtype)
        x = self.embedding((features * m).transpose(1, 2)).transpose(1, 2)  # (B, D, T) -> (B, d, T) -> (B, T, d)
        return torch.relu(x) * m

    def classify(self, x: Tensor) -> Tensor:
        """CAS logits A = W x (1x1 convolution, no bias), snippet-wise. x (..., d) -> (..., C)."""
        return self.classifier(x)

    def forward(self, x: Tensor, mask: Tensor) -> HeadOutput:
        """Pooling of docs/heads.md 5.2 and the inference signals of 5.4. x (B, T, d), mask (B, T) -> HeadOutput.

        Returns:
            video_scores (B, C) = p_act = softmax_C(top-k_act mean of A); tcam (B, T, C) = A; attention (B, T) =
            normalised magnitude m~ (0 on padding); cas (B, T, C) = minmax_t(softmax_C(A) m~); extras
            ``bkg_scores`` (B, C) = p_bkg, ``act_feature_norm`` and ``bkg_feature_norm`` (B,) = norms of the mean
            features of the selected action / background snippets, ``magnitudes`` (B, T) = ||X_t||.
        """
        sizes = expect(x, "B T d", name="features", sizes={"d": self.embed_dim})
        mask = as_mask(mask, sizes["B"], sizes["T"], x.device)
        m = mask.to(x.dtype)
        # (B, T, C), the official (dropped-out) CAS for pooling
        cas_logits = self.classify(dropout(x, self.dropout.p, self.training))
        tcam = cas_logits if self.distill_dropout or not self.training else self.classify(x)
        mags = x.norm(dim=-1) * m  # (B, T)
        k_act, k_bkg = topk_counts(mask, self.r_act), topk_counts(mask, self.r_bkg)  # (B,) each
        p_act = torch.softmax(masked_topk_mean(cas_logits, mask, k_act), dim=-1)  # (B, C): top-k on the CAS itself
        inverted = mags.masked_fill(~mask, float("-inf")).amax(dim=1, keepdim=True) - mags  # (B, T): max_t m - m_t
        # Training-time magnitude dropout: a 0/1 (rescaled) mask on the selection scores (docs/heads.md 5.2).
        keep = F.dropout(torch.ones_like(mags), p=self.magnitude_dropout, training=self.training)  # (B, T)
        sel_act = topk_selection(mags * keep, mask, k_act) / k_act[:, None]  # (B, T), rows sum to 1
        sel_bkg = topk_selection(inverted * keep, mask, k_bkg) / k_bkg[:, None]  # (B, T)
        p_bkg = torch.softmax(torch.einsum("bt,btc->bc", sel_bkg, cas_logits), dim=-1)  # (B, C)
        act_norm = torch.einsum("bt,btd->bd", sel_act, x).norm(dim=-1)  # (B,)
        bkg_norm = torch.einsum("bt,btd->bd", sel_bkg, x).norm(dim=-1)  # (B,)
        # Normalised magnitude for inference, from the selection without dropout (eval-mode statistics).
        mu_act = masked_topk_mean(mags, mask, k_act)[:, None]  # (B, 1)
        mu_bkg = masked_topk_mean(inverted, mask, k_bkg)[:, None]  # (B, 1): mean of (max - m) over bkg snippets
        mu_bkg = mags.masked_fill(~mask, float("-inf")).amax(dim=1, keepdim=True) - mu_bkg  # back to magnitudes
        attention = minmax_normalize(mags, mu_bkg, mu_act) * m  # (B, T)
        weighted = torch.softmax(tcam, dim=-1) * attention[..., None]  # (B, T, C)
        high = weighted.masked_fill(~mask[..., None], float("-inf")).amax(dim=1, keepdim=True)  # (B, 1, C)
        low = weighted.masked_fill(~mask[..., None], float("inf")).amin(dim=1, keepdim=True)  # (B, 1, C)
        cas = minmax_normalize(weighted, low, high) * m[..., None]
        extras = {"bkg_scores": p_bkg, "act_feature_norm": act_norm, "bkg_feature_norm": bkg_norm, "magnitudes": mags}
        return HeadOutput(p_act, tcam, attention, cas, extras)

    def classification_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> Tensor:
        """L_cls = BCE(p_act, y / sum y), element-wise binary CE averaged over B x C (docs/heads.md 5.3)."""
        target = labels.to(out.video_scores.dtype)
        target = target / target.sum(dim=-1, keepdim=True).clamp(min=1)
        return F.binary_cross_entropy(out.video_scores, target)

    def auxiliary_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """``uncertainty`` = alpha L_um, ``background_entropy`` = beta BCE(p_bkg, 1/C) (docs/heads.md 5.3).

        L_um = mean_B (max(0, margin - ||mean X_act||) + ||mean X_bkg||)^2.
        """
        um = ((self.margin - out.extras["act_feature_norm"]).clamp(min=0) + out.extras["bkg_feature_norm"]) ** 2
        p_bkg = out.extras["bkg_scores"]
        be = F.binary_cross_entropy(p_bkg, torch.full_like(p_bkg, 1.0 / self.num_classes))
        return {"uncertainty": self.um_weight * um.mean(), "background_entropy": self.be_weight * be}


# The head's RSKP settings: data beside its registration, written by ``rskp calibrate`` (recipes/wum.yaml records
# the candidates it trained and their held-out scores).
RECIPE = read_recipe(resources.files(__package__) / "recipes" / "wum.yaml")


@hookimpl
def register_heads(register) -> None:
    register(
        HeadSpec(
            name="wum",
            recipe=RECIPE.values,
            factory=WUMHead,
            summary="Uncertainty modeling (WUM, AAAI 2021): feature magnitudes separate action from background, "
            "top-k pooling.",
        )
    )
