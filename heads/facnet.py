"""FAC-Net as modified by RSKP: the RSKP baseline head (docs/heads.md section 2; RSKP paper sec. 3.4 and supp.).

Cosine classifier with scale s = 20 over C+1 classes (background last), a class-agnostic sigmoid attention
a = sigma(s cos(X, g)) that pools features for the class-agnostic (CA) prediction, and a class-wise ("MIL" in the
paper, feature-aggregating in the official code) prediction with sigmoid class-wise attention.

Symbols: B batch, T snippets, D input feature size, d embedding size, C action classes (C+1 with background).
"""

from __future__ import annotations

from importlib import resources
from typing import Sequence

import torch
from torch import Tensor, nn

from rskp_plugin.functional import embed_linear
from rskp_plugin.hookspecs import hookimpl
from rskp_plugin.protocols import HeadOutput, HeadSpec, LocalizationSettings, Propagated
from rskp_plugin.recipes import read_recipe
from rskp_plugin.shapes import as_mask, expect


#: RSKP's own inference rules (docs/heads.md 2.5), which FAC-Net + RSKP localises with: the ``LocalizationSettings``
#: defaults.
LOCALIZATION = LocalizationSettings()

#: FAC-Net's official per-stream rules (docs/heads.md 6), for comparison; its late fusion of the RGB and flow streams
#: is left to the caller.
OFFICIAL_LOCALIZATION = LocalizationSettings(
    thresholds=tuple(round(0.03 + 0.005 * i, 6) for i in range(5)),
    min_length=3,
    outer_weight=0.6,
    nms_threshold=0.2,
)


def cosine_logits(x: Tensor, centres: Tensor, scale: float, eps: float) -> Tensor:
    """scale * cos(x, centres), RSKP's form with ``eps`` added to both norms. x (..., d), centres (K, d) -> (..., K)."""
    cn = centres / (centres.norm(dim=-1, keepdim=True) + eps)
    # scale the (..., K) products rather than normalising x: no (..., d) temporary on the three-branch hot path
    return (x @ cn.t()) * (scale / (x.norm(dim=-1, keepdim=True) + eps))


def nce(log_probs: Tensor, target: Tensor) -> Tensor:
    """NCE(p, q) = -mean_B sum_c q_hat_c log p_c, row-normalised target (docs/heads.md 1). (B, K), (B, K) -> ()."""
    q = target / (target.sum(dim=-1, keepdim=True) + 1e-8)  # the official FAC-Net form, + 1e-8
    return -(q * log_probs).sum(dim=-1).mean()


class FACNetHead(nn.Module):
    """The RSKP head (FAC-Net with sigmoid attention, no class-wise foreground branch, no hybrid attention).

    Layers (docs/heads.md 2.1): embedding Linear(D, d) + ReLU + Dropout(0.6), Xavier-uniform weight, zero bias; action
    centres A (C+1, d) Xavier-uniform; foreground centre g (1, d) initialised to -A[C] then learned on its own.

    Args:
        num_classes: C action classes; the background is class C.
        feature_dim: D of the input features (2048 = I3D RGB + flow).
        embed_dim: d of the embedding (official: 2048).
        dropout: dropout after the embedding (official 0.6).
        scale: s, the cosine logit scale (official 20).
        background_weight: weight of the class-wise (MIL) loss NCE(p_cw, [y, 1]) (official 0.2).
        norm_eps: added to the vector norms in the cosine (official 1e-9).
        attention_eps: added to the attention sums of the temporal normalisation (official 1e-5).
        fusion_weights: inference weights of main and intra branches in ``fuse`` (official 0.6, 0.4).
    """

    def __init__(
        self,
        *,
        num_classes: int = 20,
        feature_dim: int = 2048,
        embed_dim: int = 2048,
        dropout: float = 0.6,
        scale: float = 20.0,
        background_weight: float = 0.2,
        norm_eps: float = 1e-9,
        attention_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.embed_dim = embed_dim
        self.scale = scale
        self.background_weight = background_weight
        self.norm_eps = norm_eps
        self.attention_eps = attention_eps
        self.embedding = nn.Linear(feature_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.centres = nn.Parameter(torch.empty(num_classes + 1, embed_dim))  # A, background = row C
        nn.init.xavier_uniform_(self.embedding.weight)
        nn.init.zeros_(self.embedding.bias)
        nn.init.xavier_uniform_(self.centres)
        self.foreground = nn.Parameter(-self.centres.detach()[num_classes:].clone())  # g = -A[C], (1, d)
        self.localization = LOCALIZATION

    def embed(self, features: Tensor, mask: Tensor) -> Tensor:
        """X = Dropout(ReLU(W_e F + b_e)), zero on padding. features (B, T, D), mask (B, T) -> (B, T, d)."""
        return embed_linear(features, mask, self.embedding, self.dropout.p, self.training)

    def classify(self, x: Tensor) -> Tensor:
        """TCAM logits S = s cos(x, A), snippet-wise (docs/heads.md 2.2 step 1). x (..., d) -> (..., C+1)."""
        return cosine_logits(x, self.centres, self.scale, self.norm_eps)

    def forward(self, x: Tensor, mask: Tensor) -> HeadOutput:
        """Prediction module P(X) of docs/heads.md 2.2. x (B, T, d), mask (B, T) -> HeadOutput.

        Returns:
            video_scores (B, C) = p_ca without background; tcam (B, T, C+1) = S; attention (B, T) = a (0 on
            padding); cas (B, T, C) = softmax_c(S) * a; extras ``ca_logits`` and ``cw_logits`` (B, C+1), the
            logits of p_ca and p_cw.
        """
        sizes = expect(x, "B T d", name="features", sizes={"d": self.embed_dim})
        mask = as_mask(mask, sizes["B"], sizes["T"], x.device)
        units = self._units()
        # S and the attention logits in one product over x: [A; g] (C+2, d), one read of the (B, T, d) features
        tcam, attention, weights = self._weights(x @ units.t(), x.norm(dim=-1), mask)
        return self._finish(tcam, attention, torch.bmm(weights.transpose(1, 2), x), units, mask)

    def forward_branches(self, x: Tensor, mask: Tensor, walked: Sequence[Propagated]) -> list[HeadOutput]:
        """``[self(x, mask)] + [self(p.dense(), mask) for p in walked]`` without forming the walked features.

        Each branch needs x [A; g]^T (affine: shared), |x_t| (from |F_t|^2 and F M^T) and its attention poolings
        (one product with F per branch). All branches' products with F are taken together: one read of F for
        [A; g] and every M, one for |F_t|^2, one for every branch's poolings (and as few in the backward).
        """
        sizes = expect(x, "B T d", name="features", sizes={"d": self.embed_dim})
        mask = as_mask(mask, sizes["B"], sizes["T"], x.device)
        units = self._units()  # (C+2, d)
        k = units.shape[0]
        right = torch.cat([units.expand(sizes["B"], -1, -1)] + [p.m for p in walked], dim=1)  # (B, C+2 + sum n, d)
        dots, *crosses = torch.bmm(x, right.transpose(1, 2)).split([k] + [p.m.shape[1] for p in walked], dim=-1)
        squared = (x * x).sum(dim=-1)  # (B, T)
        tiny = torch.finfo(x.dtype).tiny  # padded rows have |x| = 0: keep the square root's gradient finite
        parts = [self._weights(dots, squared.clamp(min=tiny).sqrt(), mask)]
        for p, cross in zip(walked, crosses):
            norms = p.squared_norms(squared, cross=cross).clamp(min=tiny).sqrt()
            parts.append(self._weights(p.linear(dots, units), norms, mask))
        # sum_t w_t F*_t = (w s)^T F + (w^T Z) M: the (w s)^T F of every branch in one product
        scaled = [parts[0][2]] + [w * p.scale[..., None] for (_, _, w), p in zip(parts[1:], walked)]
        from_f = torch.bmm(torch.cat(scaled, dim=-1).transpose(1, 2), x).split(k, dim=1)  # (B, C+2, d) each
        pooled = [from_f[0]] + [p.pool(w, base=b) for (_, _, w), p, b in zip(parts[1:], walked, from_f[1:])]
        return [self._finish(tcam, att, v, units, mask) for (tcam, att, _), v in zip(parts, pooled)]

    def _units(self) -> Tensor:
        """[A; g] with unit rows (+ eps, as the cosine): (C+2, d)."""
        both = torch.cat([self.centres, self.foreground])
        return both / (both.norm(dim=-1, keepdim=True) + self.norm_eps)

    def _weights(self, dots: Tensor, norms: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """S, a and the pooling weights [a~, alpha~] from x [A; g]_unit^T (B, T, C+2) and |x_t| (B, T).

        Returns:
            tcam (B, T, C+1), attention (B, T) (0 on padding), weights (B, T, C+2) (0 on padding).
        """
        m = mask.to(dots.dtype)
        both = dots * (self.scale / (norms + self.norm_eps))[..., None]  # (B, T, C+2): s cos(x, [A; g])
        tcam = both[..., :-1]  # (B, T, C+1), = classify(x)
        attention = torch.sigmoid(both[..., -1]) * m  # (B, T): a = sigma(s cos(x, g)) (docs/heads.md 2.2 step 2)
        classwise = torch.sigmoid(tcam) * m[..., None]  # (B, T, C+1), alpha
        att_norm = attention / (attention.sum(dim=1, keepdim=True) + self.attention_eps)  # (B, T), a tilde
        cw_norm = classwise / (classwise.sum(dim=1, keepdim=True) + self.attention_eps)  # (B, T, C+1)
        return tcam, attention, torch.cat([att_norm[..., None], cw_norm], dim=-1)

    def _finish(self, tcam: Tensor, attention: Tensor, pooled: Tensor, units: Tensor, mask: Tensor) -> HeadOutput:
        """P(X) from S, a and the poolings sum_t [a~, alpha~]_t x_t (B, C+2, d)."""
        v_ca, v_cw = pooled[:, 0], pooled[:, 1:]  # (B, d), (B, C+1, d): one pooled feature per class
        ca_logits = self.classify(v_ca)  # (B, C+1)
        centres = units[:-1]  # (C+1, d)
        v_cw_unit = v_cw / (v_cw.norm(dim=-1, keepdim=True) + self.norm_eps)
        cw_logits = self.scale * (v_cw_unit * centres).sum(dim=-1)  # (B, C+1): class c's feature vs centre c
        video = torch.softmax(ca_logits, dim=-1)[:, : self.num_classes]
        cas = torch.softmax(tcam, dim=-1)[..., : self.num_classes] * attention[..., None]  # (B, T, C)
        return HeadOutput(video, tcam, attention, cas, {"ca_logits": ca_logits, "cw_logits": cw_logits})

    def classification_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> Tensor:
        """NCE(p_ca, [y, 0]) + background_weight * NCE(p_cw, [y, 1]) (docs/heads.md 2.3, per branch). labels (B, C)."""
        ones = torch.ones_like(labels[:, :1])
        fore = nce(torch.log_softmax(out.extras["ca_logits"], dim=-1), torch.cat([labels, 0 * ones], dim=-1))
        back = nce(torch.log_softmax(out.extras["cw_logits"], dim=-1), torch.cat([labels, ones], dim=-1))
        return fore + self.background_weight * back

    def auxiliary_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """None: RSKP's only extra term, beta * L_att, is added by the wrapper (``attention_normalization``)."""
        return {}

    def fuse(self, outputs: Sequence[HeadOutput], weights: Sequence[float]) -> HeadOutput:
        """Test-time fusion of branches (docs/heads.md 2.5): p = sum_i w_i p_ca^i; Psi = (sum_i w_i softmax S^i) a_main.

        ``outputs[0]`` is the main branch; with the official weights (0.6, 0.4) on (main, intra) this is
        Psi = (0.6 softmax S + 0.4 softmax S^a) * a. Shapes as in ``forward``.
        """
        main = outputs[0]
        video = sum(w * o.video_scores for o, w in zip(outputs, weights))
        probs = sum(w * torch.softmax(o.tcam, dim=-1) for o, w in zip(outputs, weights))  # (B, T, C+1)
        tcam = sum(w * o.tcam for o, w in zip(outputs, weights))
        cas = probs[..., : self.num_classes] * main.attention[..., None]
        return HeadOutput(video, tcam, main.attention, cas, dict(main.extras))


# The head's RSKP settings: data beside its registration, written by ``rskp calibrate`` (recipes/facnet.yaml records
# the candidates it trained and their held-out scores).
RECIPE = read_recipe(resources.files(__package__) / "recipes" / "facnet.yaml")


@hookimpl
def register_heads(register) -> None:
    register(
        HeadSpec(
            name="facnet",
            recipe=RECIPE.values,
            factory=FACNetHead,
            summary="FAC-Net as modified by RSKP (cosine classifier, sigmoid attention, background class); "
            "the RSKP baseline.",
        )
    )
