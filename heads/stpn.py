"""STPN + embedding ("STPN + embedding" of RSKP Table 6; docs/heads.md section 3).

Sparse Temporal Pooling Network (Nguyen et al., CVPR 2018): a class-agnostic attention lambda_t in [0, 1] weights
the snippet features, their temporal mean is classified with a sigmoid per class, and an L1 term keeps the attention
sparse. RSKP puts its learnable embedding in front ("+ embedding").

Symbols: B batch, T snippets, D input feature size, d embedding size, C action classes (no background class).
"""

from __future__ import annotations

from importlib import resources
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rskp_plugin.functional import embed_linear, masked_sum, stack_affine
from rskp_plugin.hookspecs import hookimpl
from rskp_plugin.protocols import HeadOutput, HeadSpec, LocalizationSettings, Propagated, affine_branches
from rskp_plugin.recipes import read_recipe
from rskp_plugin.shapes import as_mask, expect


#: The reproduction's inference (docs/heads.md 3.3): psi >= 0.05, score = mean inside, no OIC, IoU-NMS 0.5, x24.
LOCALIZATION = LocalizationSettings(
    thresholds=(0.05,),
    min_length=1,
    outer_weight=0.0,
    inner_includes_next=False,
    nms_threshold=0.5,
    nms_overlap="iou",
    upsample=24,
    strict=False,
)


class STPNHead(nn.Module):
    """STPN with RSKP's embedding.

    Layers: embedding Linear(D, d) + ReLU + Dropout (RSKP's); attention FC(d, 256) + ReLU + FC(256, 1) + sigmoid;
    classifier FC(d, C) with bias. Weights Glorot-uniform, biases zero (the TensorFlow defaults of the reproduction).

    Args:
        num_classes: C action classes.
        feature_dim: D of the input features.
        embed_dim: d of the embedding (RSKP: 2048).
        dropout: dropout after the embedding (RSKP: 0.6).
        attention_hidden: hidden width of the attention module (256).
        sparsity_weight: beta of the L1 attention term (1e-4).
        pooling: ``"attention"`` (default: sum_t lambda_t x_t / sum_t lambda_t, attention-normalised), ``"mean"``
            (the reproduction's temporal mean of lambda_t x_t over the real snippets) or ``"sum"`` (the paper's
            sum_t lambda_t x_t, which grows with the video length). Under ``"mean"`` the attention in [0, 1] is also
            a global gain on the pooled feature: raising lambda everywhere sharpens every video logit, so the BCE
            loss drives lambda to 1 on background and foreground alike and the attention localises nothing
            (measured on the synthetic and the speech development set: benchmarks/RESULTS.md, "STPN"). Normalised
            pooling removes that gain, so lambda can only help by choosing snippets. Its scale is then free (the
            L1 term shrinks it), so localisation thresholds psi with lambda / max_t lambda instead of lambda.
    """

    attention_eps = 1e-5  # keeps the normalised pooling finite when every lambda_t underflows

    def __init__(
        self,
        *,
        num_classes: int = 20,
        feature_dim: int = 2048,
        embed_dim: int = 2048,
        dropout: float = 0.6,
        attention_hidden: int = 256,
        sparsity_weight: float = 1e-4,
        pooling: str = "attention",
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "sum", "attention"):
            raise ValueError(f'pooling must be "mean", "sum" or "attention", got {pooling!r}')
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.embed_dim = embed_dim
        self.sparsity_weight = sparsity_weight
        self.pooling = pooling
        self.embedding = nn.Linear(feature_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.attention = nn.Sequential(  # Omega: lambda_t = sigma(FC(ReLU(FC(x_t))))
            nn.Linear(embed_dim, attention_hidden), nn.ReLU(), nn.Linear(attention_hidden, 1)
        )
        self.classifier = nn.Linear(embed_dim, num_classes)
        for layer in (self.embedding, self.attention[0], self.attention[2], self.classifier):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.localization = LOCALIZATION

    def embed(self, features: Tensor, mask: Tensor) -> Tensor:
        """X = Dropout(ReLU(W_e F + b_e)), zero on padding. features (B, T, D), mask (B, T) -> (B, T, d)."""
        return embed_linear(features, mask, self.embedding, self.dropout.p, self.training)

    def classify(self, x: Tensor) -> Tensor:
        """T-CAM logits a_t = W x_t + b, snippet-wise. x (..., d) -> (..., C)."""
        return self.classifier(x)

    def forward(self, x: Tensor, mask: Tensor) -> HeadOutput:
        """x (B, T, d), mask (B, T) -> HeadOutput.

        Returns:
            video_scores (B, C) = sigma(W pool(lambda x) + b); tcam (B, T, C) = W x_t + b; attention (B, T) = lambda
            (0 on padding); cas (B, T, C) = g_t sigma(W x_t), the reproduction's bias-free T-CAM (docs/heads.md 3.3)
            gated by g = lambda (``"mean"``, ``"sum"``) or lambda / max_t lambda (``"attention"``); extras
            ``video_logits`` (B, C); score_cas (B, T, C) = g_t W x_t, the signal STPN scores proposals on
            (``localize(..., score_cas=...)``).
        """
        sizes = expect(x, "B T d", name="features", sizes={"d": self.embed_dim})
        mask = as_mask(mask, sizes["B"], sizes["T"], x.device)
        return self._from_products(F.linear(x, *self._stem()), mask)

    def forward_branches(self, x: Tensor, mask: Tensor, walked: Sequence[Propagated]) -> list[HeadOutput]:
        """``[self(x, mask)] + [self(p.dense(), mask) for p in walked]`` from one product over x: every use of x in
        STPN is affine (attention input, T-CAM, pooled logits), so the branches only add (n, d) products."""
        sizes = expect(x, "B T d", name="features", sizes={"d": self.embed_dim})
        mask = as_mask(mask, sizes["B"], sizes["T"], x.device)
        return [self._from_products(s, mask) for s in affine_branches(x, walked, *self._stem())]

    def _stem(self) -> tuple[Tensor, Tensor]:
        """The affine maps STPN applies to x, stacked: attention's first layer, then the classifier: (h, d), (h,)."""
        return stack_affine((self.attention[0], self.classifier))

    def _from_products(self, products: Tensor, mask: Tensor) -> HeadOutput:
        """Everything after the affine maps: products (B, T, 256 + C), mask (B, T) -> HeadOutput."""
        hidden, tcam = products.split([self.attention[0].out_features, self.num_classes], dim=-1)
        lam = torch.sigmoid(self.attention[2](self.attention[1](hidden))[..., 0]) * mask.to(tcam.dtype)  # (B, T)
        raw = tcam - self.classifier.bias  # (B, T, C): W x_t, the reproduction's bias-free T-CAM
        # W pool(lambda x) + b, pooled after the classifier (it is linear): no pass over the (B, T, d) features
        pooled = torch.einsum("bt,btc->bc", lam, raw)  # (B, C): sum_t lambda_t W x_t (lambda is 0 on padding)
        if self.pooling == "mean":
            pooled = pooled / mask.sum(dim=1, keepdim=True).clamp(min=1).to(tcam.dtype)
        elif self.pooling == "attention":
            pooled = pooled / (lam.sum(dim=1, keepdim=True) + self.attention_eps)
        video_logits = pooled + self.classifier.bias  # (B, C)
        gate = lam  # (B, T): the attention that weights the T-CAM for localisation
        if self.pooling == "attention":  # lambda's scale is free under normalised pooling: use lambda / max_t lambda
            gate = lam / lam.amax(dim=1, keepdim=True).clamp(min=self.attention_eps)
        cas = gate[..., None] * torch.sigmoid(raw)  # psi = lambda sigma(W x_t), thresholded
        score_cas = gate[..., None] * raw  # lambda W x_t: the scoring signal (one stream of docs/heads.md 3.3)
        return HeadOutput(torch.sigmoid(video_logits), tcam, lam, cas, {"video_logits": video_logits},
                          score_cas=score_cas)

    def classification_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> Tensor:
        """L_class = BCE-with-logits(video logits, y), mean over B x C (docs/heads.md 3.2). labels (B, C) multi-hot."""
        return F.binary_cross_entropy_with_logits(out.extras["video_logits"], labels.to(out.tcam.dtype))

    def auxiliary_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """``sparsity`` = beta * mean_B sum_t |lambda_t| over real snippets (docs/heads.md 3.2)."""
        return {"sparsity": self.sparsity_weight * masked_sum(out.attention.abs(), mask).mean()}

    def representative_scores(self, reps: Tensor) -> Tensor:
        """sigma(W mu_k + b): per-class probabilities of representative snippets (docs/heads.md 3.4).

        Shapes: reps (B, n, d) -> (B, n, C).
        """
        return torch.sigmoid(self.classify(reps))


# The head's RSKP settings: data beside its registration, written by ``rskp calibrate`` (recipes/stpn.yaml records
# the candidates it trained and their held-out scores).
RECIPE = read_recipe(resources.files(__package__) / "recipes" / "stpn.yaml")


@hookimpl
def register_heads(register) -> None:
    register(
        HeadSpec(
            name="stpn",
            recipe=RECIPE.values,
            factory=STPNHead,
            summary="STPN (sparse temporal pooling, sigmoid attention, L1 sparsity) with RSKP's learnable embedding.",
        )
    )
