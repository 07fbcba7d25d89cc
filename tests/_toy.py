"""A tiny head that follows the Head protocol, used by the core tests (not a shipped head)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rskp_plugin.functional import masked_topk_mean, topk_counts
from rskp_plugin.protocols import HeadOutput


class ToyHead(nn.Module):
    """Linear embedding + cosine-free linear classifier with a background column and a sigmoid attention."""

    def __init__(self, *, num_classes: int = 3, feature_dim: int = 8, embed_dim: int = 8, dropout: float = 0.0):
        super().__init__()
        self.num_classes, self.embed_dim = num_classes, embed_dim
        self.embedding = nn.Sequential(nn.Linear(feature_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(embed_dim, num_classes + 1)
        self.attend = nn.Linear(embed_dim, 1)

    def embed(self, features: Tensor, mask: Tensor) -> Tensor:
        return self.embedding(features) * mask[..., None].to(features.dtype)

    def classify(self, x: Tensor) -> Tensor:
        return self.classifier(x)

    def forward(self, x: Tensor, mask: Tensor) -> HeadOutput:
        tcam = self.classify(x)  # (B, T, C+1)
        attention = torch.sigmoid(self.attend(x)[..., 0])  # (B, T)
        k = topk_counts(mask, 8)
        video = masked_topk_mean(tcam, mask, k).softmax(-1)  # (B, C+1)
        cas = tcam.softmax(-1)[..., :-1] * attention[..., None]
        return HeadOutput(video_scores=video[:, :-1], tcam=tcam, attention=attention, cas=cas, extras={})

    def classification_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> Tensor:
        target = labels / labels.sum(-1, keepdim=True).clamp(min=1)
        return -(target * out.video_scores.clamp(min=1e-8).log()).sum(-1).mean()

    def auxiliary_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> dict[str, Tensor]:
        return {}


def labelled_batch(lengths, feature_dim=8, classes=3, seed=0):
    """Random float64 features (B, max T, D) of videos of ``lengths``, their mask (B, T) and one-hot labels (B, C):
    video i has class i mod C."""
    g = torch.Generator().manual_seed(seed)
    tmax = max(lengths)
    x = torch.randn(len(lengths), tmax, feature_dim, generator=g, dtype=torch.float64)
    mask = torch.arange(tmax)[None] < torch.tensor(lengths)[:, None]
    labels = torch.zeros(len(lengths), classes, dtype=torch.float64)
    labels[torch.arange(len(lengths)), torch.arange(len(lengths)) % classes] = 1
    return x, mask, labels
