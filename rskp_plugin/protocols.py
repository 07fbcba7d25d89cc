"""The contract between ``RSKPWrapper`` and any WTAL head.

Symbols: B batch, T snippets, D input feature size, d embedding size, C action classes (C+1 columns when a
head has a background class, which is then the last column).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence, runtime_checkable

import attrs
import torch
from torch import Tensor

from .localization_settings import LocalizationSettings  # part of the contract: heads import it from here


class HeadOutput(NamedTuple):
    """What a head returns for one batch of features (a NamedTuple so DDP and torch.compile see the tensors).

    Attributes:
        video_scores: (B, C) video-level class probabilities in [0, 1], action classes only.
        tcam: (B, T, C) or (B, T, C+1) snippet-wise class logits; the distillation target and student (eq. 7).
        attention: (B, T) foreground attention / actionness in [0, 1], or None if the head has none.
        cas: (B, T, C) class activation sequence that localisation thresholds.
        extras: tensors a head's own losses need beyond the above (e.g. feature magnitudes); may be empty.
        score_cas: (B, T, C) the signal proposals are scored on when a head scores them on something other than
            ``cas`` (STPN's weighted T-CAM, docs/heads.md 3.3), else None. The wrapper fuses it over branches like the
            CAS; localisation passes it on (``localize(..., score_cas=...)``).
    """

    video_scores: Tensor
    tcam: Tensor
    attention: Tensor | None
    cas: Tensor
    extras: dict[str, Tensor] = {}
    score_cas: Tensor | None = None


class Propagated(NamedTuple):
    """The BiRW output kept factored: F* = s F + Z M (eq. 6 regrouped; ``propagation.birw_factors``).

    Z M has rank n (n representatives), so a head that only needs affine maps, temporal poolings or norms of F*
    gets them from its products over F (shared with the main branch) and small (n, d) products, without ever
    forming F* or reading F once per map (``Head.forward_branches``).

    Attributes:
        features: (B, T, d) F, the walk's input.
        scale: (B, T) s: 1 - w on real snippets, 0 on padding.
        z: (B, T, n) the affinity Z of eq. 2 (zero rows on padding).
        m: (B, n, d) M = (1 - w)(w mu + w^2 (I - w^2 N^T Z)^-1 N^T (F + w Z mu)).
    """

    features: Tensor
    scale: Tensor
    z: Tensor
    m: Tensor

    def dense(self) -> Tensor:
        """F* itself (B, T, d), equal to ``birw``."""
        return torch.baddbmm(self.scale[..., None] * self.features, self.z, self.m)

    def linear(self, base: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """F* W^T + b from ``base`` = F W^T + b (B, T, h): only an (n, d) x (d, h) product is new.

        Args:
            base: (B, T, h) the same affine map applied to F.
            weight: (h, d); bias: (h,) or None.

        Returns:
            (B, T, h).
        """
        low = torch.bmm(self.z, torch.matmul(self.m, weight.t()))  # (B, T, h)
        if bias is None:
            return torch.addcmul(low, self.scale[..., None], base)
        return torch.addcmul(low + bias, self.scale[..., None], base - bias)

    def pool(self, weights: Tensor, base: Tensor | None = None) -> Tensor:
        """Temporal poolings sum_t weights[t, k] F*_t: weights (B, T, K) -> (B, K, d); one read of F for all K.

        ``base`` may pass (weights * s)^T F (B, K, d) when the caller took it together with other products of F.
        """
        low = torch.bmm(torch.bmm(weights.transpose(1, 2), self.z), self.m)  # (B, K, d)
        if base is not None:
            return low + base
        return torch.baddbmm(low, (weights * self.scale[..., None]).transpose(1, 2), self.features)

    def squared_norms(self, base_squared: Tensor, cross: Tensor | None = None) -> Tensor:
        """|F*_t|^2 (B, T) from |F_t|^2 (B, T): s^2 |F_t|^2 + 2 s Z_t . (F M^T)_t + Z_t (M M^T) Z_t^T.

        ``cross`` may pass F M^T (B, T, n) when the caller took it together with other products of F.
        """
        if cross is None:
            cross = torch.bmm(self.features, self.m.transpose(1, 2))  # (B, T, n)
        gram = torch.bmm(self.m, self.m.transpose(1, 2))  # (B, n, n)
        s = self.scale
        quad = (torch.bmm(self.z, gram) * self.z).sum(dim=-1)
        return (s * s * base_squared + 2.0 * s * (self.z * cross).sum(dim=-1) + quad).clamp(min=0.0)


def affine_branches(x: Tensor, walked: "list[Propagated] | tuple[Propagated, ...]", weight: Tensor,
                    bias: Tensor | None = None) -> list[Tensor]:
    """x W^T + b and the same affine map of every walked F*, from one product over x (``Propagated.linear``).

    For heads whose forward uses x only through one stacked affine map: ``forward_branches`` is then the head's
    remaining computation applied to each returned tensor. x (B, T, d), weight (h, d), bias (h,) -> [(B, T, h)]
    with the main branch first.
    """
    base = torch.nn.functional.linear(x, weight, bias)
    return [base] + [p.linear(base, weight, bias) for p in walked]


@runtime_checkable
class Head(Protocol):
    """A weakly supervised temporal action localisation head that RSKP can wrap.

    ``isinstance(obj, Head)`` only proves the names exist; ``rskp_plugin.testing.check_head`` checks behaviour.
    Every method must ignore padded snippets (``mask`` False) so that a padded batch gives the numbers of each
    video alone.
    """

    num_classes: int
    embed_dim: int  # d: the size of what ``embed`` returns (the summariser and memory bank are built for it)

    def embed(self, features: Tensor, mask: Tensor) -> Tensor:
        """Learnable embedding of frozen backbone features: (B, T, D), mask (B, T) -> (B, T, d), zero on padding."""
        ...

    def __call__(self, features: Tensor, mask: Tensor) -> HeadOutput:
        """Run the head on embedded features (B, T, d) with mask (B, T); works on F, F^a and F^e alike."""
        ...

    def classify(self, x: Tensor) -> Tensor:
        """Snippet-wise class logits with no temporal context: (..., d) -> (..., C) or (..., C+1)."""
        ...

    def classification_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> Tensor:
        """Video-level classification loss (a scalar); applied to every RSKP branch. labels (B, C) multi-hot."""
        ...

    def auxiliary_loss(self, out: HeadOutput, labels: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """The head's own extra loss terms, already weighted (main branch only); may be empty."""
        ...

    # Optional parts: see ``HeadTraits`` (attributes) and ``FusesBranches``, ``ForwardsBranches``,
    # ``ScoresRepresentatives`` (methods); ``head_traits`` resolves them once, when a model is built.


@runtime_checkable
class ForwardsBranches(Protocol):
    """Optional, for speed: the head on F and on every walked F* at once, sharing its products over F.

    ``forward_branches(x, mask, walked)`` must return ``[self(x, mask)] + [self(p.dense(), mask) for p in walked]``
    (``check_head`` compares them) and may share its products over x between the branches (``Propagated.linear``,
    ``.pool``, ``.squared_norms``). A head whose forward draws dropout or applies a non-linearity to x before its
    first linear map cannot share them and should not define it.
    """

    def forward_branches(self, x: Tensor, mask: Tensor, walked: Sequence[Propagated]) -> list[HeadOutput]:
        """x (B, T, d), mask (B, T), walked: the BiRW outputs kept factored -> [main, one per walk]."""
        ...


@runtime_checkable
class FusesBranches(Protocol):
    """Optional: the head's own test-time fusion of branch outputs (default: a weighted sum of video scores, TCAM
    and CAS with the first branch's attention). ``score_cas`` is fused by the wrapper, whatever ``fuse`` returns."""

    def fuse(self, outputs: Sequence[HeadOutput], weights: Sequence[float]) -> HeadOutput:
        """outputs[0] is the main branch; weights sum to 1. Shapes as in ``Head.__call__``."""
        ...


@runtime_checkable
class ScoresRepresentatives(Protocol):
    """Optional: class probabilities of representative snippets, used to rank memory bank entries (default:
    softmax of ``classify`` over the action classes)."""

    def representative_scores(self, reps: Tensor) -> Tensor:
        """reps (B, n, d) -> (B, n, C) probabilities in [0, 1]."""
        ...


@attrs.frozen(kw_only=True)
class HeadTraits:
    """What a head declares beyond the required ``Head`` protocol, resolved once by ``head_traits``.

    A head's RSKP settings are not traits: they are its recipe, data on its ``HeadSpec`` (``rskp_plugin.recipes``).

    Attributes:
        localization: the head's ``localization`` attribute (a ``LocalizationSettings``) or None for the RSKP
            defaults; ``settings`` gives the one to use.
        fuse: the head defines ``fuse`` (``FusesBranches``).
        forward_branches: the head defines ``forward_branches`` (``ForwardsBranches``).
        representative_scores: the head defines ``representative_scores`` (``ScoresRepresentatives``).
    """

    localization: Any = None
    fuse: bool = False
    forward_branches: bool = False
    representative_scores: bool = False

    @property
    def settings(self) -> LocalizationSettings:
        """The localisation settings the head asks for, or the RSKP defaults if it declares none."""
        return self.localization if self.localization is not None else LocalizationSettings()


#: Class attributes through which heads once declared RSKP settings; they now belong in the head's recipe
#: (``HeadSpec.recipe``), and ``head_checks`` warns where a head still declares one (it would be ignored).
RECIPE_ATTRIBUTES = {
    "attention_normalization": "losses.attention_normalization (0 for off)",
    "distillation_temperature": "losses.distillation_temperature",
    "propagated_head_gradient": "propagation.head_gradient",
    "branch_parameters": "propagation.branch_parameters",
    "distilled": "teacher.distill",
}


def head_traits(head: Any) -> HeadTraits:
    """The optional parts ``head`` declares (``HeadTraits``); models resolve them once, when built. The only place
    that looks a head's optional parts up by name: everything else reads ``HeadTraits``."""
    return HeadTraits(
        localization=getattr(head, "localization", None),
        fuse=isinstance(head, FusesBranches),
        forward_branches=isinstance(head, ForwardsBranches),
        representative_scores=isinstance(head, ScoresRepresentatives),
    )


def declared_recipe_attributes(head: Any) -> list[str]:
    """The ``RECIPE_ATTRIBUTES`` that ``head`` (or its class) still declares."""
    return [name for name in RECIPE_ATTRIBUTES if hasattr(head, name)]


def recipe_attribute_message(head: Any, declared: list[str]) -> str:
    """What to do about RSKP settings declared on a head class (``declared_recipe_attributes``)."""
    moves = "; ".join(f"{name} -> {RECIPE_ATTRIBUTES[name]}" for name in declared)
    return (f"{type(head).__name__} declares {', '.join(declared)} as attributes, which RSKP no longer reads: a "
            f"head's RSKP settings are its recipe, HeadSpec(recipe={{...}}) with dotted rskp keys ({moves}); see "
            "CONTRIBUTING.md, 'A head's recipe'")


def missing_head_parts(head: Any) -> tuple[list[str], list[str]]:
    """The required ``Head`` parts ``head`` lacks: (int attributes, methods), each in protocol order."""
    attributes = [a for a in ("num_classes", "embed_dim") if not isinstance(getattr(head, a, None), int)]
    methods = [m for m in ("embed", "classify", "classification_loss", "auxiliary_loss")
               if not callable(getattr(head, m, None))]
    return attributes, methods


@attrs.frozen(kw_only=True)
class HeadSpec:
    """One registered head.

    Attributes:
        name: the name users pass to ``create_head``; unique across installed plugins.
        factory: builds the head; accepts ``num_classes`` and ``feature_dim`` plus head-specific keywords.
        summary: one line shown by ``rskp heads``.
        plugin: the plugin module or object that registered it (filled in by the plugin manager).
        distribution: the installed distribution providing the plugin, e.g. ``rskp-plugin 0.1.0``.
        recipe: the head's RSKP settings, dotted ``rskp`` config keys -> values (``rskp_plugin.recipes``), e.g.
            ``{"propagation.branch_parameters": ["foreground"]}``; empty: the defaults. Usually read from a recipe
            file that ``rskp calibrate`` wrote (``recipes.read_recipe(path).values``).
    """

    name: str = attrs.field(validator=attrs.validators.matches_re(r"[A-Za-z0-9_.\-]+"))
    factory: Callable[..., Any]
    summary: str = ""
    plugin: str = ""
    distribution: str = ""
    recipe: Mapping[str, Any] = attrs.field(factory=dict)
