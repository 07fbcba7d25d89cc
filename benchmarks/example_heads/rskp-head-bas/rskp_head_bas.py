"""rskp_head_bas: a background-suppression head of the BaS-Net family (Lee et al., AAAI 2020) for rskp.

BaS-Net has one classifier with an extra background column and two branches through it: the base branch classifies
every snippet and is trained to find the background class in every video; the suppression branch classifies the
snippets weighted by a foreground attention from the filtering module and is trained to find no background at all,
so the attention learns to suppress background snippets. An L1 norm keeps the attention sparse. Besides its own
localisation rules (BaS-Net's) and turning off RSKP's attention term (BaS-Net regularises its attention itself), it
declares nothing for RSKP: no distillation, propagation or branch setting.

Adapted to rskp's Head protocol: BaS-Net's filtering module reads the backbone features and its CAS module starts
with a temporal convolution (kernel 3); here the embedding is snippet-wise (``embed``) and the filtering module reads
the embedded snippets, so that RSKP's propagated snippets get their own attention. The classifier has no bias, as
BaS-Net's last convolution, so weighting the snippets before the classifier equals weighting their logits.

Symbols: B batch, T snippets, D input feature size, d embedding size, C action classes (C+1 columns, background
last). ``mask`` is (B, T) bool, True on real snippets.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rskp_plugin import HeadOutput, HeadSpec, LocalizationSettings
from rskp_plugin.functional import embed_linear, masked_sum, masked_topk_mean, topk_counts
from rskp_plugin.hookspecs import hookimpl

__version__ = "0.1.0"


def minmax_over_time(x: Tensor, mask: Tensor) -> Tensor:
    """BaS-Net's ``utils.minmax_norm`` of each video over its real snippets, per channel.

    (x - relu(min)) / (relu(max) - relu(min)), clipped to [0, 1]; a channel whose span is not positive is divided
    by 1 instead.

    Args:
        x: (B, T, K) values.
        mask: (B, T) bool, True on real snippets.

    Returns:
        (B, T, K) in [0, 1], zero on padding.
    """
    real = mask[..., None]
    high = torch.relu(x.masked_fill(~real, float("-inf")).amax(dim=1, keepdim=True))  # (B, 1, K)
    low = torch.relu(x.masked_fill(~real, float("inf")).amin(dim=1, keepdim=True))
    span = high - low
    span = torch.where(span > 0, span, torch.ones_like(span))
    return ((x - low) / span).clamp(0.0, 1.0) * real.to(x.dtype)


def bas_video_loss(logits: Tensor, labels: Tensor, background: float) -> Tensor:
    """BaS-Net's classification loss of one branch: ``nn.BCELoss`` between the video's softmax over C+1 columns
    and its labels with the background label appended, normalised to sum 1.

    Computed from the logits: log p_j = z_j - logsumexp(z) and log(1 - p_j) = logsumexp(z without column j) -
    logsumexp(z), finite even where the softmax rounds to 0 or 1, and free of ``binary_cross_entropy``, which CUDA
    autocast refuses. Equal to ``nn.BCELoss`` except that BCELoss clamps each log at -100.

    Args:
        logits: (B, C+1) the branch's top-k mean T-CAM, background last.
        labels: (B, C) multi-hot action labels.
        background: the background label, 1 for the base branch and 0 for the suppression branch.

    Returns:
        () mean over videos and columns (so a batch gives the mean of its videos' losses).
    """
    target = torch.cat([labels, torch.full_like(labels[:, :1], background)], dim=-1).to(logits.dtype)
    target = target / target.sum(dim=-1, keepdim=True).clamp_min(1.0)  # a video with no label at all: no NaN
    total = torch.logsumexp(logits, dim=-1, keepdim=True)  # (B, 1)
    columns = logits.shape[-1]
    alone = torch.eye(columns, dtype=torch.bool, device=logits.device)  # row j: column j left out
    rest = logits[:, None, :].masked_fill(alone, float("-inf")).logsumexp(dim=-1)  # (B, C+1)
    return -(target * (logits - total) + (1.0 - target) * (rest - total)).mean()


class BaSHead(nn.Module):
    """BaS-Net's head: embed (B, T, D) -> (B, T, d); classify (..., d) -> (..., C+1); forward -> ``HeadOutput``.

    Args:
        num_classes: C.
        feature_dim: D.
        embed_dim: d (BaS-Net: 2048).
        filter_dim: hidden width of the filtering module (BaS-Net: 512).
        dropout: dropout after the embedding's ReLU in training (BaS-Net: 0.7).
        norm_weight: alpha, the weight of the attention's L1 norm (BaS-Net: 1e-4).
        topk_ratio: k = max(len // topk_ratio, 1) snippets are averaged per class (BaS-Net: 8).
    """

    # BaS-Net's test.py: a class is localised when its video score is at least 0.25; its min-max normalised CAS is
    # upsampled 24 times, cut at 0.0, 0.025, ..., 0.225 (positions below the threshold set to 0 and scored so), runs
    # of at least 2 positions scored by inner - outer mean (flanks of 0.25 of the length), NMS at IoU 0.7 over
    # seconds. BaS-Net adds 0.2 x the *binarised* class score to every proposal, the same constant for every
    # proposal of a class, which ranks nothing: no video-score term here.
    localization = LocalizationSettings(
        thresholds=tuple(round(0.025 * i, 6) for i in range(10)),
        class_threshold=0.25,
        min_length=2,
        inflation=0.25,
        outer_weight=1.0,
        video_score_weight=0.0,
        inner_includes_next=False,
        nms_threshold=0.7,
        nms_overlap="iou",
        upsample=24,
        strict=False,
        zero_below_threshold=True,
        nms_units="seconds",
    )

    def __init__(self, *, num_classes: int = 20, feature_dim: int = 2048, embed_dim: int = 2048, filter_dim: int = 512,
                 dropout: float = 0.7, norm_weight: float = 1e-4, topk_ratio: int = 8) -> None:
        super().__init__()
        self.num_classes, self.embed_dim = num_classes, embed_dim
        self.dropout, self.norm_weight, self.topk_ratio = dropout, norm_weight, topk_ratio
        self.embedding = nn.Linear(feature_dim, embed_dim)
        self.filter = nn.Sequential(nn.Linear(embed_dim, filter_dim), nn.LeakyReLU(), nn.Linear(filter_dim, 1))
        self.classifier = nn.Linear(embed_dim, num_classes + 1, bias=False)

    def embed(self, features: Tensor, mask: Tensor) -> Tensor:
        """X = Dropout(ReLU(W F + b)), zero on padding: features (B, T, D), mask (B, T) -> (B, T, d)."""
        return embed_linear(features, mask, self.embedding, self.dropout, self.training)

    def classify(self, x: Tensor) -> Tensor:
        """Snippet-wise logits of the C action classes and the background (last): x (..., d) -> (..., C+1)."""
        return self.classifier(x)

    def foreground(self, x: Tensor, mask: Tensor) -> Tensor:
        """The filtering module: a_t = sigmoid(MLP(x_t)), snippet-wise: x (B, T, d), mask (B, T) -> (B, T), zero on
        padding."""
        return torch.sigmoid(self.filter(x).squeeze(-1)) * mask.to(x.dtype)

    def forward(self, x: Tensor, mask: Tensor) -> HeadOutput:
        """Both branches of BaS-Net on embedded snippets.

        Args:
            x: (B, T, d) embedded snippets (F, or one of RSKP's propagated F^a, F^e).
            mask: (B, T) bool, True on real snippets.

        Returns:
            ``HeadOutput`` with video_scores (B, C) the suppression branch's softmax without its background
            column (what BaS-Net classifies with); tcam (B, T, C+1) the base branch's logits; attention (B, T) the
            filtering module's a; cas (B, T, C) the suppression branch's T-CAM min-max normalised over each video
            (what BaS-Net localises with); extras ``{"base_logits", "supp_logits"}`` (B, C+1) the two branches'
            top-k mean logits, which the loss reads.
        """
        tcam = self.classify(x)  # (B, T, C+1)
        attention = self.foreground(x, mask)  # (B, T)
        suppressed = attention[..., None] * tcam  # = classify(a x): the classifier has no bias
        k = topk_counts(mask, self.topk_ratio)
        base_logits = masked_topk_mean(tcam, mask, k)  # (B, C+1)
        supp_logits = masked_topk_mean(suppressed, mask, k)
        video = torch.softmax(supp_logits, dim=-1)[:, :-1]  # (B, C)
        cas = minmax_over_time(suppressed, mask)[..., :-1]  # (B, T, C)
        return HeadOutput(video, tcam, attention, cas, {"base_logits": base_logits, "supp_logits": supp_logits})

    def classification_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> Tensor:
        """L_base + L_supp of BaS-Net: the base branch finds the background in every video, the suppression branch
        in none.

        Args:
            out: this head's output; reads ``extras["base_logits"]`` and ``extras["supp_logits"]`` (B, C+1).
            labels: (B, C) multi-hot.
            mask: (B, T) bool (the pooling already used it).

        Returns:
            () scalar.
        """
        base = bas_video_loss(out.extras["base_logits"], labels, background=1.0)
        return base + bas_video_loss(out.extras["supp_logits"], labels, background=0.0)

    def auxiliary_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """BaS-Net's L_norm, already weighted: alpha times each video's L1 norm of a over its real snippets, averaged
        over videos.

        BaS-Net resamples every video to 750 snippets, so its norm is over a fixed length; here a longer video's
        norm is larger, as the sum over its own snippets.

        Args:
            out: this head's output; reads ``attention`` (B, T).
            labels: (B, C), unused.
            mask: (B, T) bool.

        Returns:
            ``{"norm": () scalar}``.
        """
        return {"norm": self.norm_weight * masked_sum(out.attention.abs(), mask).mean()}


@hookimpl
def register_heads(register) -> None:
    """Register the ``bas`` head (entry point ``bas`` of the ``rskp_plugin`` group)."""
    # BaS-Net regularises its attention with its own L1 norm (``auxiliary_loss``); RSKP's L_att would add a second
    # term on the same attention that is no part of the method: the head's recipe switches it off.
    register(HeadSpec(name="bas", factory=BaSHead,
                      summary="Background suppression head (BaS-Net family, AAAI 2020): background class + filter.",
                      recipe={"losses.attention_normalization": 0.0}))
