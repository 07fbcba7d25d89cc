"""BM: background modeling (Nguyen, Ramanan, Fowlkes, ICCV 2019), in the DGAM formulation (docs/heads.md section 4).

No BM code was ever released; the formulas are those of DGAM's code (which covers every ingredient the BM paper
names): a class-agnostic attention lambda pools a foreground feature (weights lambda) and a background feature
(weights 1 - lambda); both are classified over C+1 classes (background last); the foreground must predict the video
labels, the background the background class; a self-guided term pulls lambda towards the smoothed class activation
of the ground-truth classes; an optional clustering term separates the pooled foreground and background features.

Symbols: B batch, T snippets, D input feature size, d embedding size, C action classes (C+1 with background).
"""

from __future__ import annotations

from importlib import resources
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rskp_plugin.functional import embed_linear, masked_gaussian_smooth, masked_mean, masked_sum, stack_affine
from rskp_plugin.hookspecs import hookimpl
from rskp_plugin.protocols import HeadOutput, HeadSpec, LocalizationSettings, Propagated, affine_branches
from rskp_plugin.recipes import read_recipe
from rskp_plugin.shapes import as_mask, expect


#: DGAM-style inference (docs/heads.md 4.4) as far as the shared settings express it: classes with video score > 0.1
#: (else the arg-max); thresholds 0.03 (DGAM's RGB) and 0.08 (flow) on psi = lambda sigma(a), pooled because one
#: JOINT model replaces the two streams; OIC score with kappa = 0.3 and flanks of a quarter of the length; x20
#: linear upsampling; IoU-NMS at 0.5.
LOCALIZATION = LocalizationSettings(
    thresholds=(0.03, 0.08),
    class_threshold=0.1,
    fallback_argmax=True,
    min_length=1,
    inflation=0.25,
    outer_weight=0.3,
    inner_includes_next=False,
    nms_threshold=0.5,
    nms_overlap="iou",
    upsample=20,
    strict=True,
)


def softmax_nll(logits: Tensor, target: Tensor) -> Tensor:
    """-mean_B sum_c q_hat_c log softmax(logits)_c with the row-normalised target. (B, K), (B, K) -> ()."""
    q = target / (target.sum(dim=-1, keepdim=True) + 1e-8)  # the official FAC-Net form, + 1e-8
    return -(q * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


class BMHead(nn.Module):
    """Background-modeling head (DGAM's classifier and attention without the CVAE).

    Layers: embedding Linear(D, d) + ReLU + Dropout (RSKP's; BM's Table 6 row does not say "+ embedding" but RSKP
    propagates in an embedding space); attention Omega = FC(d, 256) + ReLU + FC(256, 1) + sigmoid; classifier
    FC(d, C+1) with bias; with ``cluster_weight > 0`` also two affine cluster scorers u_fg, u_bg (FC(d, 2)).

    Args:
        num_classes: C action classes; the background is class C.
        feature_dim: D of the input features.
        embed_dim: d of the embedding.
        dropout: dropout after the embedding (RSKP's 0.6).
        attention_hidden: hidden width of the attention module (256).
        background_weight: weight of L_bg (DGAM, THUMOS14: 0.03).
        guide_weight: weight of L_guide (0.1).
        cluster_weight: weight of L_cluster (0 = off, as in every DGAM training loop that runs; 0.3 when enabled).
        sparsity_weight: weight of L_sparse = mean_B sum_t |lambda_t| (0 = off).
        guide_sigma: standard deviation, in snippets, of the Gaussian smoothing of the guide target (1).
        pooling: ``"dgam"`` (x_fg = sum lambda x / (sum lambda + 1), x_bg = sum (1-lambda) x / (sum (1-lambda) + 1e-6),
            DGAM's training normalisation, independent of T) or ``"mean"`` ((1/T) sum lambda x; the BM paper as
            recalled).
        cas_mode: ``"sigmoid"`` (CAS = lambda sigma(W x_t), DGAM/STPN-style psi) or ``"softmax"``
            (lambda softmax(W x_t) over C+1, background dropped).
    """

    def __init__(
        self,
        *,
        num_classes: int = 20,
        feature_dim: int = 2048,
        embed_dim: int = 2048,
        dropout: float = 0.6,
        attention_hidden: int = 256,
        background_weight: float = 0.03,
        guide_weight: float = 0.1,
        cluster_weight: float = 0.0,
        sparsity_weight: float = 0.0,
        guide_sigma: float = 1.0,
        pooling: str = "dgam",
        cas_mode: str = "sigmoid",
    ) -> None:
        super().__init__()
        if pooling not in ("dgam", "mean"):
            raise ValueError(f'pooling must be "dgam" or "mean", got {pooling!r}')
        if cas_mode not in ("sigmoid", "softmax"):
            raise ValueError(f'cas_mode must be "sigmoid" or "softmax", got {cas_mode!r}')
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.embed_dim = embed_dim
        self.background_weight = background_weight
        self.guide_weight = guide_weight
        self.cluster_weight = cluster_weight
        self.sparsity_weight = sparsity_weight
        self.guide_sigma = guide_sigma
        self.pooling = pooling
        self.cas_mode = cas_mode
        self.embedding = nn.Linear(feature_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.attention = nn.Sequential(  # Omega: lambda_t = sigma(FC(ReLU(FC(x_t))))
            nn.Linear(embed_dim, attention_hidden), nn.ReLU(), nn.Linear(attention_hidden, 1)
        )
        self.classifier = nn.Linear(embed_dim, num_classes + 1)
        # Only built when used: a parameter that never gets a gradient would be dead weight in every optimiser step.
        self.cluster = nn.Linear(embed_dim, 2) if cluster_weight > 0 else None
        nn.init.xavier_uniform_(self.embedding.weight)
        nn.init.zeros_(self.embedding.bias)
        self.localization = LOCALIZATION

    def embed(self, features: Tensor, mask: Tensor) -> Tensor:
        """X = Dropout(ReLU(W_e F + b_e)), zero on padding. features (B, T, D), mask (B, T) -> (B, T, d)."""
        return embed_linear(features, mask, self.embedding, self.dropout.p, self.training)

    def classify(self, x: Tensor) -> Tensor:
        """S = W x + b over C+1 classes, snippet-wise. x (..., d) -> (..., C+1)."""
        return self.classifier(x)

    def _pool(self, raw: Tensor, weights: Tensor, mask: Tensor, eps: float) -> Tensor:
        """Attention pooling (docs/heads.md 4.1) of linear maps of x: raw (B, T, k) = x W^T, weights (B, T) zero on
        padding -> (B, k) = W x_pooled. Pooling after the (linear) maps equals pooling x first."""
        total = torch.einsum("bt,btk->bk", weights, raw)  # (B, k); weights are 0 on padding
        if self.pooling == "mean":
            return total / mask.sum(dim=1, keepdim=True).clamp(min=1).to(raw.dtype)
        return total / (weights.sum(dim=1, keepdim=True) + eps)

    def forward(self, x: Tensor, mask: Tensor) -> HeadOutput:
        """x (B, T, d), mask (B, T) -> HeadOutput.

        Returns:
            video_scores (B, C) = softmax(W x_fg + b) without background; tcam (B, T, C+1) = W x_t + b;
            attention (B, T) = lambda (0 on padding); cas (B, T, C) per ``cas_mode``; extras ``fg_logits`` and
            ``bg_logits`` (B, C+1), and with clustering on ``cluster_fg``/``cluster_bg`` (B,) = d(x_fg), d(x_bg).
        """
        sizes = expect(x, "B T d", name="features", sizes={"d": self.embed_dim})
        mask = as_mask(mask, sizes["B"], sizes["T"], x.device)
        return self._from_products(F.linear(x, *self._stem()), mask)

    def forward_branches(self, x: Tensor, mask: Tensor, walked: Sequence[Propagated]) -> list[HeadOutput]:
        """``[self(x, mask)] + [self(p.dense(), mask) for p in walked]`` from one product over x: BM uses x only
        through affine maps (attention input, classifier, cluster scorers) and poolings of them."""
        sizes = expect(x, "B T d", name="features", sizes={"d": self.embed_dim})
        mask = as_mask(mask, sizes["B"], sizes["T"], x.device)
        return [self._from_products(s, mask) for s in affine_branches(x, walked, *self._stem())]

    def _layers(self) -> list[nn.Linear]:
        return [self.attention[0], self.classifier] + ([self.cluster] if self.cluster is not None else [])

    def _stem(self) -> tuple[Tensor, Tensor]:
        """The affine maps BM applies to x, stacked (attention input, classifier, cluster): (h, d), (h,)."""
        return stack_affine(self._layers())

    def _from_products(self, products: Tensor, mask: Tensor) -> HeadOutput:
        """Everything after the affine maps: products (B, T, h) = x W_stem^T + b_stem, mask (B, T) -> HeadOutput."""
        layers = self._layers()
        parts = products.split([l.out_features for l in layers], dim=-1)
        hidden, tcam = parts[0], parts[1]  # (B, T, hidden), (B, T, C+1)
        m = mask.to(tcam.dtype)
        lam = torch.sigmoid(self.attention[2](self.attention[1](hidden))[..., 0]) * m  # (B, T)
        raw = tcam - self.classifier.bias  # (B, T, C+1): DGAM's bias-free T-CAM a_t = W x_t
        fg_raw = self._pool(raw, lam, mask, 1.0)  # (B, C+1) = W x_fg
        bg_raw = self._pool(raw, (1 - lam) * m, mask, 1e-6)  # (B, C+1) = W x_bg
        fg_logits, bg_logits = fg_raw + self.classifier.bias, bg_raw + self.classifier.bias  # classify(x_fg), (x_bg)
        if self.cas_mode == "sigmoid":
            cas = lam[..., None] * torch.sigmoid(raw[..., : self.num_classes])
        else:
            cas = lam[..., None] * torch.softmax(raw, dim=-1)[..., : self.num_classes]
        extras = {"fg_logits": fg_logits, "bg_logits": bg_logits}
        if self.cluster is not None:
            craw = parts[2] - self.cluster.bias  # (B, T, 2)
            for name, weights, eps in (("cluster_fg", lam, 1.0), ("cluster_bg", (1 - lam) * m, 1e-6)):
                u = self._pool(craw, weights, mask, eps) + self.cluster.bias  # (B, 2): u_fg, u_bg of the pooled x
                extras[name] = u[:, 0] - u[:, 1]
        video = torch.softmax(fg_logits, dim=-1)[:, : self.num_classes]
        return HeadOutput(video, tcam, lam, cas, extras)

    def classification_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> Tensor:
        """L_fg + background_weight * L_bg (docs/heads.md 4.2). labels (B, C) multi-hot.

        L_fg = -sum_c y_hat_c log softmax(W x_fg + b)_c with target [y, 0]; L_bg = -log softmax(W x_bg + b)_C.
        """
        fg = softmax_nll(out.extras["fg_logits"], torch.cat([labels, torch.zeros_like(labels[:, :1])], dim=-1))
        bg = -torch.log_softmax(out.extras["bg_logits"], dim=-1)[:, self.num_classes].mean()
        return fg + self.background_weight * bg

    def guide_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> Tensor:
        """Self-guided attention L_guide (docs/heads.md 4.2), unweighted. labels (B, C), mask (B, T) -> ().

        P = smooth_t(softmax_{C+1}(W x_t)) detached (Gaussian, sigma snippets, reflect at each video's ends);
        g_fg = max over ground-truth classes of P[:, c]; g_bg = 1 - P[:, C];
        L = mean_B mean_t over real snippets of |lambda - g_fg| + |lambda - g_bg|.
        """
        raw = (out.tcam - self.classifier.bias).detach()  # (B, T, C+1), bias-free as in DGAM
        probs = masked_gaussian_smooth(torch.softmax(raw, dim=-1), mask, sigma=self.guide_sigma)
        labelled = probs[..., : self.num_classes] * labels[:, None, :].to(probs.dtype)  # (B, T, C), 0 off-label
        g_fg = labelled.amax(dim=-1)  # (B, T); probabilities are >= 0, so this is the max over GT classes
        g_bg = 1 - probs[..., self.num_classes]  # (B, T)
        lam = out.attention
        return masked_mean((lam - g_fg).abs() + (lam - g_bg).abs(), mask).mean()

    def auxiliary_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Weighted extra terms (main branch only): ``guide``, plus ``cluster`` and ``sparsity`` when enabled."""
        losses = {"guide": self.guide_weight * self.guide_loss(out, labels, mask)}
        if self.cluster is not None:
            # L_cluster = -log sigma(d(x_fg)) - log sigma(-d(x_bg)), each averaged over the batch (docs/heads.md 4.2).
            cluster = F.softplus(-out.extras["cluster_fg"]).mean() + F.softplus(out.extras["cluster_bg"]).mean()
            losses["cluster"] = self.cluster_weight * cluster
        if self.sparsity_weight > 0:
            losses["sparsity"] = self.sparsity_weight * masked_sum(out.attention.abs(), mask).mean()
        return losses


# The head's RSKP settings: data beside its registration, written by ``rskp calibrate`` (recipes/bm.yaml records
# the candidates it trained and their held-out scores).
RECIPE = read_recipe(resources.files(__package__) / "recipes" / "bm.yaml")


@hookimpl
def register_heads(register) -> None:
    register(
        HeadSpec(
            name="bm",
            recipe=RECIPE.values,
            factory=BMHead,
            summary="Background modeling (BM, ICCV 2019; DGAM's formulas): fg/bg attention pooling, "
            "background class, self-guided attention.",
        )
    )
