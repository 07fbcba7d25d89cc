"""rskp_head_mil: a multiple-instance-learning head of the W-TALC family (Paul et al., ECCV 2018) for rskp.

The head of W-TALC without its co-activity similarity loss: a linear embedding with ReLU and dropout, a linear
classifier with one column per action class (no background class), video scores from the softmax of the top-k mean
of the T-CAM, and the multiple-instance cross-entropy of W-TALC's ``MILL`` as its only loss. Besides its own
localisation thresholds it declares nothing for RSKP (no distillation, propagation or attention setting): it shows
what ``RSKPWrapper`` does for a head that knows nothing of it.

Symbols: B batch, T snippets, D input feature size, d embedding size, C action classes. ``mask`` is (B, T) bool,
True on real snippets.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rskp_plugin import HeadOutput, HeadSpec, LocalizationSettings
from rskp_plugin.functional import embed_linear, masked_topk_mean, topk_counts
from rskp_plugin.hookspecs import hookimpl

__version__ = "0.1.0"


class MILHead(nn.Module):
    """W-TALC's head: embed (B, T, D) -> (B, T, d); classify (..., d) -> (..., C); forward -> ``HeadOutput``.

    Args:
        num_classes: C.
        feature_dim: D.
        embed_dim: d (default: D, as W-TALC's ``fc`` keeps the feature width).
        dropout: dropout after the embedding's ReLU in training (W-TALC: 0.7).
        topk_ratio: k = max(len // topk_ratio, 1) snippets are averaged per class for the video score (W-TALC: 8;
            W-TALC rounds len / 8 up, ``rskp_plugin.functional.topk_counts`` rounds it down).
    """

    # The CAS is a per-snippet softmax over the classes, so it is thresholded from 0.1 to 0.9; RSKP's default
    # thresholds (0.001 to 0.039) lie below the 1 / C a snippet with no action still gets, and mark whole videos.
    # Proposals, scores and NMS stay RSKP's. W-TALC's own rule (half of each video's T-CAM range, scored by the
    # maximum) has no counterpart in LocalizationSettings; see README.md for what each choice measured.
    localization = LocalizationSettings(thresholds=tuple(round(0.1 * i, 6) for i in range(1, 10)))

    def __init__(self, *, num_classes: int = 20, feature_dim: int = 2048, embed_dim: int | None = None,
                 dropout: float = 0.7, topk_ratio: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embed_dim = feature_dim if embed_dim is None else embed_dim
        self.dropout, self.topk_ratio = dropout, topk_ratio
        self.embedding = nn.Linear(feature_dim, self.embed_dim)
        self.classifier = nn.Linear(self.embed_dim, num_classes)
        for layer in (self.embedding, self.classifier):  # W-TALC's weights_init: Xavier-uniform weights, zero bias
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def embed(self, features: Tensor, mask: Tensor) -> Tensor:
        """X = Dropout(ReLU(W F + b)), zero on padding: features (B, T, D), mask (B, T) -> (B, T, d)."""
        return embed_linear(features, mask, self.embedding, self.dropout, self.training)

    def classify(self, x: Tensor) -> Tensor:
        """Snippet-wise class logits, no background column: x (..., d) -> (..., C)."""
        return self.classifier(x)

    def forward(self, x: Tensor, mask: Tensor) -> HeadOutput:
        """Video scores, T-CAM and CAS of embedded snippets.

        Args:
            x: (B, T, d) embedded snippets (F, or one of RSKP's propagated F^a, F^e).
            mask: (B, T) bool, True on real snippets.

        Returns:
            ``HeadOutput`` with video_scores (B, C) = softmax of the top-k mean of the T-CAM; tcam (B, T, C) the
            logits; attention None; cas (B, T, C) each snippet's softmax over the classes, zero on padding; extras
            ``{"pooled": (B, C)}`` the top-k mean logits the loss reads.
        """
        tcam = self.classify(x)  # (B, T, C)
        pooled = masked_topk_mean(tcam, mask, topk_counts(mask, self.topk_ratio))  # (B, C)
        video = torch.softmax(pooled, dim=-1)
        # Without a background column a snippet's softmax is spread over the classes where no action happens, and
        # concentrated on one class inside an action: thresholds from 0.1 up separate the two (see ``localization``).
        cas = torch.softmax(tcam, dim=-1) * mask[..., None].to(tcam.dtype)
        return HeadOutput(video, tcam, None, cas, {"pooled": pooled})

    def classification_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> Tensor:
        """W-TALC's multiple-instance loss: cross-entropy of the video's softmax against its labels normalised to
        sum 1, averaged over the batch.

        Args:
            out: this head's output; reads ``extras["pooled"]`` (B, C).
            labels: (B, C) multi-hot. A video without labels contributes 0 (W-TALC would divide by zero).
            mask: (B, T) bool (the pooling already used it).

        Returns:
            () scalar.
        """
        target = labels / labels.sum(dim=-1, keepdim=True).clamp_min(1.0)
        return -(target * torch.log_softmax(out.extras["pooled"], dim=-1)).sum(dim=-1).mean()

    def auxiliary_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """No other term. W-TALC's co-activity similarity loss compares pairs of videos that share a class, so a
        batch's value is not the mean of its videos' values, which the Head protocol requires of every loss."""
        return {}


@hookimpl
def register_heads(register) -> None:
    """Register the ``mil`` head (entry point ``mil`` of the ``rskp_plugin`` group)."""
    register(HeadSpec(name="mil", factory=MILHead,
                      summary="Multiple-instance learning head (W-TALC family, ECCV 2018), no background class."))
