"""The ``rskp`` config: validated attrs classes (loaded from YAML and ``--set`` by :mod:`rskp_plugin.config_io`).

Defaults are the official RSKP code's (docs/design.md section 6); where the package departs from it or the paper
differs, the field's documentation says so. Every key is documented in its field's ``metadata["doc"]`` with its
paper reference or the measurement behind its default; ``config_keys`` lists them and docs/config.md is their table.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import attrs
from attrs.validators import and_, ge, gt, in_, le, lt

from .config_io import MOVED_KEYS, set_values
from .errors import ConfigError
from .method.registry import LOSS_TERMS, walk_methods


#: ``rskp.summarizer.method``: how the representative snippets mu^a are made (``rskp_plugin.method.representatives``).
SUMMARIZER_METHODS = ("em", "em_nograd", "kmeans", "agglomerative", "spectral", "discriminative", "extremes",
                      "features")
#: ``rskp.summarizer.region``: which snippets are summarised and walked (supplement Table 2).
SUMMARIZER_REGIONS = ("all", "foreground", "background")


def _doc(text: str) -> dict[str, str]:
    """A field's metadata: its documentation, with the paper reference or the measurement behind its default."""
    return {"doc": text}


@attrs.frozen(kw_only=True)
class SummarizerConfig:
    """EM attention (paper 3.1, eq. 2-3), and the paper's ablations of it (``rskp_plugin.method.representatives``)."""

    num_representatives: int = attrs.field(default=8, validator=ge(1), metadata=_doc(
        "n, representative snippets per video (paper 3.1; official: 8)."))
    em_iters: int = attrs.field(default=2, validator=ge(1), metadata=_doc(
        "EM iterations of eq. 2-3 from the learned initial means mu^(0) (paper 3.1; official: 2)."))
    temperature: float = attrs.field(default=5.0, validator=gt(0), metadata=_doc(
        "lambda of eq. 2's affinity softmax(lambda cos(F, mu)) (paper 3.1; official: 5)."))
    init: str = attrs.field(default="orthogonal", validator=in_(("orthogonal", "xavier")), metadata=_doc(
        "Initialisation of mu^(0): \"orthogonal\" the paper's (semi-)orthogonal one (paper 3.1), \"xavier\" the "
        "official code's."))
    method: str = attrs.field(default="em", validator=in_(SUMMARIZER_METHODS), metadata=_doc(
        "How mu^a is made: \"em\", EM attention (eq. 2-3). Table 4: \"em_nograd\" (EM-Att w/o BP), \"kmeans\", "
        "\"agglomerative\" and \"spectral\" (scikit-learn: pip install \"rskp-plugin[clustering]\"), "
        "\"discriminative\" (the n top-scoring snippets of the main branch). Supplement Table 2: \"extremes\" (top "
        "n/2 and bottom n/2 by foreground score). Table 3: \"features\" (the walk runs over the video's own "
        "snippets)."))
    region: str = attrs.field(default="all", validator=in_(SUMMARIZER_REGIONS), metadata=_doc(
        "Which snippets are summarised and walked: \"all\" (paper). Supplement Table 2: \"foreground\" / "
        "\"background\": F S (S = the main branch's foreground score, or 1 - it) is summarised and walked, and "
        "F (1 - S) added back. The activitynet13 config sets \"foreground\": where instances cover half a video, "
        "walking every snippet blurs action into background (held-out AVG of FAC-Net 14.5 all vs 27.0 foreground, "
        "head alone 23.2); on THUMOS-shaped and speech data it did not help (BM: -11 held-out AVG; "
        "benchmarks/RESULTS.md, \"ActivityNet-shaped\")."))


@attrs.frozen(kw_only=True)
class MemoryConfig:
    """Per-class memory bank of representative snippets (paper 3.2)."""

    slots: int = attrs.field(default=5, validator=ge(1), metadata=_doc(
        "s, representative snippets kept per class (paper 3.2; official: 5)."))
    enabled: bool = attrs.field(default=True, metadata=_doc(
        "The memory bank and the inter-video branch (paper 3.2). False: the \"w/o memory bank\" rows of Tables 3-5 "
        "and supplement Tables 2-3, which run the paper's ablations without it."))
    warmup_epochs: int = attrs.field(default=100, validator=ge(0), metadata=_doc(
        "The memory bank is filled after this many epochs and the inter-video branch joins then (official: epoch "
        "index 100 of 200)."))


def _term_weights(value: Any) -> Any:
    """YAML ints as float weights; the rest for the validator."""
    if isinstance(value, Mapping):
        return {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in value.items()}
    return value


def _registered_terms(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A mapping of the loss terms registered when the value is checked to weights >= 0."""
    if not isinstance(value, dict):
        raise TypeError(f"'{attribute.name}' must be a mapping of loss term names to weights, got {value!r}", value)
    for name, weight in value.items():
        if name not in LOSS_TERMS:
            known = ", ".join(LOSS_TERMS) or "none is registered (method.registry.register_loss_term)"
            raise ValueError(f"'{attribute.name}': unknown loss term {name!r}; the registered terms: {known}")
        if not isinstance(weight, float) or weight < 0:
            raise ValueError(f"'{attribute.name}': the weight of {name!r} must be a number >= 0, got {weight!r}")


@attrs.frozen(kw_only=True)
class LossConfig:
    """Loss weights (eq. 8) and the distillation temperature."""

    distillation: float = attrs.field(default=1.0, validator=ge(0), metadata=_doc(
        "alpha of eq. 8, the weight of L_kd (eq. 7) during the memory bank's warm-up (paper and official: 1.0)."))
    distillation_after_warmup: float = attrs.field(default=0.5, validator=ge(0), metadata=_doc(
        "alpha of eq. 8 once the memory bank is used (official: 0.5; the paper keeps 1.0)."))
    distillation_temperature: float = attrs.field(default=1.0, validator=gt(0), metadata=_doc(
        "tau on teacher and student logits of eq. 7. 1.0 is the paper's eq. 7, which has no temperature; the "
        "official code's 0.2 was tuned for FAC-Net's cosine logits scaled by 20 and sharpens unnormalised logits to "
        "one confident class per snippet. Chosen on held-out videos of six heads and two sets (benchmarks/RESULTS.md, "
        "\"Recipes\": the worst held-out gain over the head alone -1.8 at 1.0 against -14.2 at 0.2); FAC-Net's and "
        "BM's recipes keep 0.2, ``official()`` too."))
    attention_normalization: float = attrs.field(default=0.1, validator=ge(0), metadata=_doc(
        "beta of eq. 8's L_att on the main branch's attention (paper and official: 0.1); a head that regularises "
        "its attention itself (STPN's L1, BM's L_guide, WUM's L_um) sets 0 in its recipe."))
    attention_topk_ratio: int = attrs.field(default=8, validator=ge(1), metadata=_doc(
        "L_att compares the means of the k = max(T // ratio, 1) smallest and largest attentions (official: 8)."))
    inter_classification: float = attrs.field(default=0.5, validator=ge(0), metadata=_doc(
        "Weight of the inter-video branch's L_cls in eq. 8 (official: 0.5)."))
    intra_classification: float = attrs.field(default=1.0, validator=ge(0), metadata=_doc(
        "Weight of the intra-video branch's L_cls in eq. 8 (official: 1). 0 with "
        "inter_classification 0: Table 5's \"propagate features w/o L_cls\"."))
    rampup_epochs: int | None = attrs.field(default=None, validator=attrs.validators.optional(ge(0)), metadata=_doc(
        "RSKP's own terms (the propagated branches' L_cls, the distillation, a feature loss) are weighted by "
        "exp(-5 (1 - e / E)^2) in epoch e < E (the sigmoid ramp-up of temporal ensembling, Laine & Aila 2017): the "
        "head first learns as it does alone, then the walk's branches join. None: E = memory.warmup_epochs, so "
        "RSKP's terms reach full weight when the inter-video branch joins; 0: full weight from the first step "
        "(official). Measured: benchmarks/RESULTS.md, \"Transfer\"."))
    feature_loss: str = attrs.field(default="none", validator=in_(("none", "l1", "l2")), metadata=_doc(
        "Supplement Table 3, \"feature L1/L2 loss\": a term pulling the intra walk's F^a towards F, the masked "
        "mean of |F - F^a| (\"l1\") or (F - F^a)^2 (\"l2\") over snippets and channels; \"none\": off (paper)."))
    feature_weight: float = attrs.field(default=1.0, validator=ge(0), metadata=_doc(
        "Weight of feature_loss (supplement Table 3 gives none; 1)."))
    terms: dict[str, float] = attrs.field(factory=dict, converter=_term_weights, validator=_registered_terms,
                                          metadata=_doc(
        "Loss terms registered with ``method.registry.register_loss_term`` and their weights, e.g. "
        "{score_agreement: 0.1}; each is ramped up like RSKP's own terms. Empty: eq. 8 as in the paper and the "
        "official code."))


@attrs.frozen(kw_only=True)
class TeacherConfig:
    """How the pseudo-labels T^f that the main branch distils (eq. 7) are formed.

    Defaults differ from the official code (``RSKPConfig.official()`` restores it): on recorded signals the
    propagated branches localise worse than the main branch, so the official teacher (propagated branches only,
    every snippet weighted alike) pulls the student down (benchmarks/RESULTS.md, "Transfer").
    """

    source: str = attrs.field(default="ensemble", validator=in_(("propagated", "ensemble")), metadata=_doc(
        "\"ensemble\": the main branch fused with the propagated ones as the official test-time prediction fuses "
        "them, main weight fusion.test_main; \"propagated\": 0.8 intra + 0.2 inter logits alone (eq. 7, official). "
        "Measured: benchmarks/RESULTS.md, \"Transfer\"."))
    weighting: str = attrs.field(default="confidence", validator=in_(("uniform", "confidence")), metadata=_doc(
        "\"confidence\": each snippet's term is weighted by the teacher's confidence, 1 - normalised entropy of "
        "T^f at the distillation temperature; \"uniform\": every snippet counts the same (eq. 7, official). "
        "Measured: benchmarks/RESULTS.md, \"Transfer\"."))
    distill: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool), metadata=_doc(
        "Whether the main branch distils T^f at all (eq. 7; official: True). False: the \"w/o distillation\" "
        "ablation, and the recipe of a head whose TCAM does not localise, such as STPN's (benchmarks/RESULTS.md, "
        "\"Recipes\")."))


def _optional_tuple(value: Any) -> Any:
    """Lists (or one name) from YAML and ``--set`` as tuples, which keep the frozen config hashable."""
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, list) else value


def _walk_method(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """``in_`` over the walks known when the value is checked (the built-in ones and those registered since)."""
    in_(walk_methods())(instance, attribute, value)


@attrs.frozen(kw_only=True)
class PropagationConfig:
    """How representative snippets reach the snippets (paper 3.3); the other values are the paper's ablations
    (``rskp_plugin.method.walks``)."""

    method: str = attrs.field(default="birw", validator=_walk_method, metadata=_doc(
        "\"birw\": eq. 6 in closed form (paper); \"random_walk\": Table 5 row 1, F^a = Z^a mu^a (no residual F); "
        "\"unrolled\": Fig. 5, eq. 4-5 iterated ``steps`` times; \"scores\": Table 5 \"propagate scores\", the "
        "representatives' class logits walked into the main branch's TCAM (eq. 6 on logits; no L_cls on those "
        "branches). A walk registered with ``method.registry.register_walk`` is one more value."))
    weight: float = attrs.field(default=0.5, validator=[gt(0), lt(1)], metadata=_doc(
        "w of eq. 4-6: how much of a snippet's walked feature comes from the representatives (paper and "
        "official: 0.5)."))
    temperature: float = attrs.field(default=5.0, validator=gt(0), metadata=_doc(
        "lambda of eq. 2's affinity softmax(lambda cos(F, mu)) in the walk (paper and official: 5, as the "
        "summariser's)."))
    steps: int = attrs.field(default=3, validator=ge(1), metadata=_doc(
        "Rounds k of eq. 4-5 for method \"unrolled\" only (Fig. 5 varies k; benchmarks/RESULTS.md, \"Fig. 5\": 1 "
        "to 10 steps localise alike)."))
    inter_fusion: str = attrs.field(default="late", validator=in_(("late", "early")), metadata=_doc(
        "\"late\": separate intra and inter walks, teacher 0.8 T^a + 0.2 T^e (paper 3.3, official); \"early\": "
        "supplement Table 3 \"concat mu^a and mu^e\", after warm-up one walk over [mu^a; mu^e] that replaces both "
        "branches."))
    head_gradient: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool), metadata=_doc(
        "Whether the propagated branches' losses reach the head's own weights (its classifier, attention; the "
        "embedding F and the summariser learn from them either way). True: official; False runs the branches on "
        "the head's weights as constants (benchmarks/RESULTS.md, \"Transfer\")."))
    branch_parameters: tuple[str, ...] = attrs.field(
        default=(), converter=_optional_tuple,
        validator=attrs.validators.deep_iterable(attrs.validators.instance_of(str),
                                                 attrs.validators.instance_of(tuple)),
        metadata=_doc(
            "Parameters of the head (names, or dotted prefixes such as \"attention\") of which the propagated "
            "branches keep their own copy, initialised from the head's and trained by those branches' losses alone: "
            "the main branch's copy then learns from the real snippets only. (): every parameter shared (official). "
            "A head's recipe names its attention-like parameters here where that measured better on held-out videos "
            "(``rskp calibrate``; benchmarks/RESULTS.md, \"Recipes\")."))


@attrs.frozen(kw_only=True)
class FusionConfig:
    """How branch outputs are combined."""

    pseudo_label_intra: float = attrs.field(default=0.8, validator=and_(ge(0), le(1)), metadata=_doc(
        "The intra branch's share of the teacher, T^f = 0.8 T^a + 0.2 T^e (eq. 7; official: 0.8)."))
    test_main: float = attrs.field(default=0.6, validator=and_(ge(0), le(1)), metadata=_doc(
        "The main branch's share where branches are fused: 0.6 main + 0.4 intra at test (official: 0.6), and in "
        "the ensemble teacher (teacher.source)."))
    use_intra_at_test: bool = attrs.field(default=False, metadata=_doc(
        "False: the main branch alone at test, which the ensemble teacher has distilled the fusion into; True: "
        "0.6 main + 0.4 intra (official; it spreads the CAS of heads whose intra branch localises worse: "
        "benchmarks/RESULTS.md, \"Transfer\")."))


@attrs.frozen(kw_only=True)
class RSKPConfig:
    """Everything RSKPWrapper needs; the defaults reproduce the official RSKP code."""

    summarizer: SummarizerConfig = attrs.field(factory=SummarizerConfig)
    memory: MemoryConfig = attrs.field(factory=MemoryConfig)
    losses: LossConfig = attrs.field(factory=LossConfig)
    fusion: FusionConfig = attrs.field(factory=FusionConfig)
    teacher: TeacherConfig = attrs.field(factory=TeacherConfig)
    propagation: PropagationConfig = attrs.field(factory=PropagationConfig)
    factored_branches: bool = attrs.field(default=True, metadata=_doc(
        "Speed only: heads with ``forward_branches`` get the walk's output factored, the same numbers with fewer "
        "passes over the features (benchmarks/RESULTS.md, \"Training speed\"; benchmarks/fingerprints.py "
        "records both paths)."))

    def __attrs_post_init__(self) -> None:
        if self.losses.feature_loss != "none" and self.propagation.method == "scores":
            raise ConfigError(
                f"rskp.losses.feature_loss={self.losses.feature_loss} compares F with the propagated features F^a, "
                "but rskp.propagation.method=scores propagates class logits, not features; choose another method "
                "or set rskp.losses.feature_loss=none"
            )

    @classmethod
    def official(cls) -> "RSKPConfig":
        """The official RSKP code's formulation where the defaults differ from it: the teacher from the propagated
        branches alone, every snippet weighted alike, main fused with intra at test, no ramp-up and distillation at
        tau 0.2 (``--set`` keys: rskp.teacher.source=propagated rskp.teacher.weighting=uniform
        rskp.fusion.use_intra_at_test=true rskp.losses.rampup_epochs=0 rskp.losses.distillation_temperature=0.2).
        A head's recipe is not applied on top of it."""
        return cls(losses=LossConfig(rampup_epochs=0, distillation_temperature=0.2),
                   teacher=TeacherConfig(source="propagated", weighting="uniform"),
                   fusion=FusionConfig(use_intra_at_test=True))


MOVED_KEYS[RSKPConfig] = {"walk_weight": "propagation.weight", "walk_temperature": "propagation.temperature"}


def check_values(values: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """``values`` as a plain dict after checking that every key is a ``rskp`` config key and every value valid for
    it (``ConfigError`` names ``source`` and the key)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: a recipe is a mapping of dotted rskp keys to values, got "
                          f"{type(values).__name__}")
    try:
        set_values(RSKPConfig(), {str(k): _yaml_value(v) for k, v in values.items()})
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    return {str(k): _yaml_value(v) for k, v in values.items()}


def _yaml_value(value: Any) -> Any:
    """Tuples as lists (what YAML and ``set_values`` take)."""
    if isinstance(value, tuple):
        return [_yaml_value(v) for v in value]
    return value




class ConfigKey(NamedTuple):
    """One ``rskp`` key: its dotted name, its default and its documentation (``metadata["doc"]``, "" if missing)."""

    name: str
    default: Any
    doc: str


def config_keys(cls: type = RSKPConfig, prefix: str = "") -> list[ConfigKey]:
    """Every key of ``cls`` (sections walked recursively), in declaration order."""
    out: list[ConfigKey] = []
    for field in attrs.fields(cls):
        name = f"{prefix}{field.name}"
        default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
        if attrs.has(type(default)):
            out += config_keys(type(default), f"{name}.")
        else:
            out.append(ConfigKey(name, default, field.metadata.get("doc", "")))
    return out


def keys_table() -> str:
    """The Markdown table of every ``rskp`` key, its default and its documentation (docs/config.md holds it)."""
    rows = ["| key | default | what it is, and why this default |", "| --- | --- | --- |"]
    for key in config_keys():
        default = "[]" if key.default == () else "null" if key.default is None else (
            str(key.default).lower() if isinstance(key.default, bool) else str(key.default))
        rows.append(f"| `rskp.{key.name}` | `{default}` | {key.doc.replace('|', '/')} |")
    return "\n".join(rows) + "\n"
