"""RSKP configuration: validated attrs classes, loadable from YAML with dotted-path errors for unknown keys.

Defaults are the official RSKP code's (docs/design.md section 6); where the paper differs, the paper's value is an
option and the field's comment says so.
"""

from __future__ import annotations

import difflib
import os
import typing
from typing import Any, Mapping, TypeVar

import attrs
import yaml
from attrs.validators import and_, ge, gt, in_, le, lt

from .errors import ConfigError
from .method.registry import walk_methods
from .yaml_io import read_yaml, safe_load_yaml, shown, shown_text, yaml_problem

T = TypeVar("T")


#: ``rskp.summarizer.method``: how the representative snippets mu^a are made (``rskp_plugin.method.representatives``).
SUMMARIZER_METHODS = ("em", "em_nograd", "kmeans", "agglomerative", "spectral", "discriminative", "extremes",
                      "features")
#: ``rskp.summarizer.region``: which snippets are summarised and walked (supplement Table 2).
SUMMARIZER_REGIONS = ("all", "foreground", "background")


@attrs.frozen(kw_only=True)
class SummarizerConfig:
    """EM attention (paper 3.1, eq. 2-3), and the paper's ablations of it (``rskp_plugin.method.representatives``)."""

    num_representatives: int = attrs.field(default=8, validator=ge(1))  # n
    em_iters: int = attrs.field(default=2, validator=ge(1))
    temperature: float = attrs.field(default=5.0, validator=gt(0))  # lambda
    # "orthogonal": the paper's (semi-)orthogonal init of mu0; "xavier": the official code's.
    init: str = attrs.field(default="orthogonal", validator=in_(("orthogonal", "xavier")))
    # "em" (default): EM attention, eq. 2-3. Table 4: "em_nograd" (EM-Att w/o BP), "kmeans", "agglomerative" and
    # "spectral" (scikit-learn: pip install "rskp-plugin[clustering]"), "discriminative" (the n top-scoring snippets
    # of the main branch). Supplement Table 2: "extremes" (top n/2 and bottom n/2 by foreground score). Table 3:
    # "features" (replace mu^a with F: the walk runs over the video's own snippets).
    method: str = attrs.field(default="em", validator=in_(SUMMARIZER_METHODS))
    # "all" (default): every snippet. Supplement Table 2: "foreground" / "background": F S (S = the main branch's
    # foreground score, or 1 - it) is summarised and walked, and F (1 - S) added back.
    region: str = attrs.field(default="all", validator=in_(SUMMARIZER_REGIONS))


@attrs.frozen(kw_only=True)
class MemoryConfig:
    """Per-class memory bank of representative snippets (paper 3.2)."""

    slots: int = attrs.field(default=5, validator=ge(1))  # s
    enabled: bool = True
    # The inter-video branch joins after this many epochs (official: epoch index 100 of 200).
    warmup_epochs: int = attrs.field(default=100, validator=ge(0))


@attrs.frozen(kw_only=True)
class LossConfig:
    """Loss weights (eq. 8) and the distillation temperature."""

    distillation: float = attrs.field(default=1.0, validator=ge(0))  # alpha during warm-up
    distillation_after_warmup: float = attrs.field(default=0.5, validator=ge(0))  # official; the paper keeps 1.0
    # tau of eq. 7. 1.0 (default) is the paper's eq. 7, which has no temperature; the official code's 0.2 was tuned for
    # FAC-Net's cosine logits scaled by 20 and sharpens unnormalised logits to one confident class per snippet. Chosen
    # on held-out videos of six heads and two sets (benchmarks/RESULTS.md, "Recipes": the worst held-out gain over
    # the head alone -1.8 at 1.0 against -14.2 at 0.2); FAC-Net's and BM's recipes keep 0.2, ``official()`` too.
    distillation_temperature: float = attrs.field(default=1.0, validator=gt(0))
    # beta of eq. 8's L_att on the main branch's attention; a head that regularises its attention itself (STPN's
    # L1, BM's L_guide, WUM's L_um) sets 0 in its recipe.
    attention_normalization: float = attrs.field(default=0.1, validator=ge(0))
    attention_topk_ratio: int = attrs.field(default=8, validator=ge(1))  # k = max(T // ratio, 1)
    inter_classification: float = attrs.field(default=0.5, validator=ge(0))  # weight of the inter branch L_cls
    intra_classification: float = attrs.field(default=1.0, validator=ge(0))
    # RSKP's own terms (the propagated branches' L_cls, the distillation, a feature loss) are weighted by
    # exp(-5 (1 - e / E)^2) in epoch e < E (the sigmoid ramp-up of temporal ensembling, Laine & Aila 2017): the
    # head first learns as it does alone, then the walk's branches join. None (default): E = the memory bank's
    # warm-up (``memory.warmup_epochs``), so RSKP's terms reach full weight when the inter-video branch joins;
    # 0: full weight from the first step (official). Why: benchmarks/RESULTS.md "Transfer".
    rampup_epochs: int | None = attrs.field(default=None, validator=attrs.validators.optional(ge(0)))
    # Supplement Table 3, "feature L1/L2 loss": a term pulling the intra walk's F^a towards F, the masked mean of
    # |F - F^a| ("l1") or (F - F^a)^2 ("l2") over snippets and channels, weight ``feature_weight``; "none": off.
    feature_loss: str = attrs.field(default="none", validator=in_(("none", "l1", "l2")))
    feature_weight: float = attrs.field(default=1.0, validator=ge(0))


@attrs.frozen(kw_only=True)
class TeacherConfig:
    """How the pseudo-labels T^f that the main branch distils (eq. 7) are formed.

    Defaults differ from the official code (``RSKPConfig.official()`` restores it): on recorded signals the
    propagated branches localise worse than the main branch, so the official teacher (propagated branches only,
    every snippet weighted alike) pulls the student down (benchmarks/RESULTS.md, "Transfer").
    """

    # "ensemble" (default): the main branch fused with the propagated ones as the official test-time prediction
    # fuses them, main weight ``fusion.test_main``; "propagated": 0.8 intra + 0.2 inter logits alone (official).
    source: str = attrs.field(default="ensemble", validator=in_(("propagated", "ensemble")))
    # "confidence" (default): each snippet's term is weighted by the teacher's confidence, 1 - normalised entropy of
    # T^f at the distillation temperature; "uniform": every snippet counts the same (official).
    weighting: str = attrs.field(default="confidence", validator=in_(("uniform", "confidence")))
    # Whether the main branch distils T^f at all (eq. 7; False: the "w/o distillation" ablation, and the recipe of a
    # head whose TCAM does not localise, such as STPN's). True: official.
    distill: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))


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

    # "birw": eq. 6 in closed form (default); "random_walk": Table 5 row 1, F^a = Z^a mu^a (no residual F);
    # "unrolled": Fig. 5, eq. 4-5 iterated ``steps`` times; "scores": Table 5 "propagate scores", the
    # representatives' class logits walked into the main branch's TCAM (eq. 6 on logits; no L_cls on those branches).
    # A walk registered with ``method.registry.register_walk`` is one more value.
    method: str = attrs.field(default="birw", validator=_walk_method)
    # w of eq. 4-6: how much of a snippet's walked feature comes from the representatives (official and paper: 0.5).
    weight: float = attrs.field(default=0.5, validator=[gt(0), lt(1)])
    # lambda of eq. 2's affinity softmax(lambda cos(F, mu)) in the walk (official and paper: 5, as the summariser's).
    temperature: float = attrs.field(default=5.0, validator=gt(0))
    steps: int = attrs.field(default=3, validator=ge(1))  # rounds of eq. 4-5, used by "unrolled" only
    # "late": separate intra and inter walks, teacher 0.8 T^a + 0.2 T^e (default); "early": supplement Table 3
    # "concat mu^a and mu^e", after warm-up one walk over [mu^a; mu^e] that replaces both branches.
    inter_fusion: str = attrs.field(default="late", validator=in_(("late", "early")))
    # Whether the propagated branches' losses reach the head's own weights (its classifier, attention; the
    # embedding F and the summariser learn from them either way). True: official; False runs the branches on the
    # head's weights as constants.
    head_gradient: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    # Parameters of the head (names, or dotted prefixes such as "attention") of which the propagated branches keep
    # their own copy, initialised from the head's and trained by those branches' losses alone: the main branch's
    # copy then learns from the real snippets only. (): every parameter shared (official). A head's recipe names
    # its attention-like parameters here where that measured better on held-out videos (``rskp calibrate``).
    branch_parameters: tuple[str, ...] = attrs.field(
        default=(), converter=_optional_tuple,
        validator=attrs.validators.deep_iterable(attrs.validators.instance_of(str),
                                                 attrs.validators.instance_of(tuple)))


@attrs.frozen(kw_only=True)
class FusionConfig:
    """How branch outputs are combined."""

    pseudo_label_intra: float = attrs.field(default=0.8, validator=and_(ge(0), le(1)))  # T^f = 0.8 T^a + 0.2 T^e
    test_main: float = attrs.field(default=0.6, validator=and_(ge(0), le(1)))  # inference: 0.6 main + 0.4 intra
    # False (default): the main branch alone at test, which the ensemble teacher has distilled the fusion into;
    # True: 0.6 main + 0.4 intra (official; it spreads the CAS of heads whose intra branch localises worse).
    use_intra_at_test: bool = False


@attrs.frozen(kw_only=True)
class RSKPConfig:
    """Everything RSKPWrapper needs; the defaults reproduce the official RSKP code."""

    summarizer: SummarizerConfig = attrs.field(factory=SummarizerConfig)
    memory: MemoryConfig = attrs.field(factory=MemoryConfig)
    losses: LossConfig = attrs.field(factory=LossConfig)
    fusion: FusionConfig = attrs.field(factory=FusionConfig)
    teacher: TeacherConfig = attrs.field(factory=TeacherConfig)
    propagation: PropagationConfig = attrs.field(factory=PropagationConfig)
    # heads with ``forward_branches`` get the walk's output factored (same numbers, fewer passes over the features)
    factored_branches: bool = True

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


#: Keys that moved: class -> {old name: new name}, refused with the new name (checkpoints' configs are migrated).
MOVED_KEYS: dict[type, dict[str, str]] = {
    RSKPConfig: {"walk_weight": "propagation.weight", "walk_temperature": "propagation.temperature"},
}


def _unknown_key(cls: type, key: Any, dotted: str, valid: list[str], depth: int = 0) -> ConfigError:
    """The error for a key ``cls`` lacks (``key``: part ``depth`` from the end of ``dotted``): its new name, or
    the closest valid one."""
    moved = MOVED_KEYS.get(cls, {}).get(str(key))
    if moved is not None:
        parts = dotted.split(".")
        at = len(parts) - 1 - depth
        new = ".".join(parts[:at] + [moved] + parts[at + 1:])
        return ConfigError(f'Config key "{dotted}" has moved: did you mean "{new}"?')
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f' Did you mean "{close[0]}"?' if close else ""
    return ConfigError(f'Unknown config key "{dotted}".{hint} Valid keys here: {", ".join(valid)}.')


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, f.type) for f in attrs.fields(cls)}


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, *, path: str = "") -> T:
    """Build ``cls`` from a (YAML) mapping, recursing into nested attrs classes.

    Unknown keys raise ``ConfigError`` naming the dotted path and the valid keys; invalid values raise
    ``ConfigError`` naming the key and the validator's message.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or cls.__name__} must be a mapping of keys to values, got {type(data).__name__}")
    types = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in types:
            raise _unknown_key(cls, key, dotted, sorted(types))
        ftype = types[key]
        if attrs.has(ftype):
            kwargs[key] = from_mapping(ftype, value, path=dotted)
        else:
            kwargs[key] = _coerce(value, ftype, dotted)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        key = _culprit(cls, kwargs)
        if key is None:
            raise ConfigError(f"Invalid value in {path or cls.__name__}: {_message(exc)}") from exc
        dotted = f"{path}.{key}" if path else key
        raise ConfigError(f'Invalid value for "{dotted}" ({shown(kwargs[key], 80)}): {_message(exc)}') from exc


def _culprit(cls: type, kwargs: Mapping[str, Any]) -> str | None:
    """The key of ``kwargs`` whose value alone makes ``cls`` refuse it (None when only a combination does)."""
    for key, value in kwargs.items():
        try:
            cls(**{key: value})
        except (TypeError, ValueError):
            return key
    return None


def _message(exc: BaseException) -> str:
    """An exception's message, at most ``2 * MAX_SHOWN`` characters (a validator may show a whole value); attrs'
    ``in_`` and ``instance_of`` validators put it first in a tuple of internals."""
    if isinstance(exc, (ValueError, TypeError)) and len(exc.args) > 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc)
    return shown_text(text)


def _coerce(value: Any, ftype: Any, dotted: str) -> Any:
    """YAML gives ints for floats and lists for tuples; accept those, reject the rest with the key named."""
    if ftype in (float, "float") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if ftype in (float, "float") and isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    origin = typing.get_origin(ftype)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin is tuple and not isinstance(value, tuple):
        raise ConfigError(f'Config key "{dotted}" must be a list, e.g. [{shown(value, 40)}], got {shown(value)}')
    simple = {int: int, float: float, bool: bool, str: str, "int": int, "float": float, "bool": bool, "str": str}
    want = simple.get(ftype)
    if want is not None and not (isinstance(value, want) and not (want is int and isinstance(value, bool))):
        raise ConfigError(f'Config key "{dotted}" must be {want.__name__}, got {shown(value)}')
    return value


def non_default_mapping(config: Any, *, everything: bool = False) -> dict[str, Any]:
    """The values of an attrs config that differ from its class defaults (``everything``: all values), as nested
    plain data (tuples become lists): what a YAML file holds.
    ``from_mapping(type(config), non_default_mapping(config)) == config``."""
    out: dict[str, Any] = {}
    for field in attrs.fields(type(config)):
        value = getattr(config, field.name)
        if attrs.has(type(value)):
            nested = non_default_mapping(value, everything=everything)
            if nested:
                out[field.name] = nested
            continue
        default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
        if everything or value != default:
            out[field.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def load_yaml(cls: type[T], path: str | os.PathLike[str]) -> T:
    """Read a YAML file holding only non-default values and build ``cls``; errors name the file."""
    data = read_yaml(path)
    try:
        return from_mapping(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{os.fspath(path)}: {exc}") from exc


def apply_overrides(config: T, overrides: list[str]) -> T:
    """Apply ``--set a.b=value`` overrides (values parsed as YAML scalars) through ``attrs.evolve``.

    A key inside a mapping-valued field is set on its own: ``head.options.embed_dim=16`` keeps the other options.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f'Override "{item}" must look like key.sub=value')
        key, raw = item.split("=", 1)
        if not raw.strip():
            raise ConfigError(f'Override "{item}" has no value; write {key}=VALUE, or {key}="" for an empty string')
        try:
            value = safe_load_yaml(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f'Override "{shown_text(item)}": the value is not valid YAML ({yaml_problem(exc)})') from exc
        config = _evolve_path(config, key.strip().split("."), value, key)
    return config


def set_values(config: T, values: Mapping[str, Any]) -> T:
    """Set dotted keys to already-typed values (command-line flags: no YAML parsing, so ``2024`` stays a string).

    Each value is checked like a YAML value of that key; ``ConfigError`` names the key.
    """
    for key, value in values.items():
        config = _evolve_path(config, key.split("."), value, key)
    return config


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


def _evolve_path(obj: Any, parts: list[str], value: Any, dotted: str) -> Any:
    if isinstance(obj, Mapping):  # a free-form mapping such as head.options: set one key, keep the others
        inner = obj.get(parts[0], {}) if len(parts) > 1 else None
        if len(parts) > 1 and not isinstance(inner, Mapping):
            raise ConfigError(f'Config key "{dotted}": {parts[0]!r} holds {shown(inner)}, not a mapping of keys')
        return {**obj, parts[0]: value if len(parts) == 1 else _evolve_path(inner, parts[1:], value, dotted)}
    if not attrs.has(type(obj)):
        raise ConfigError(f'Config key "{dotted}" goes inside a value ({shown(obj)}); only sections have sub-keys')
    types = _field_types(type(obj))
    head = parts[0]
    if head not in types:
        raise _unknown_key(type(obj), head, dotted, sorted(types), len(parts) - 1)
    if len(parts) == 1:
        new = from_mapping(types[head], value, path=dotted) if attrs.has(types[head]) else _coerce(
            value, types[head], dotted
        )
    else:
        new = _evolve_path(getattr(obj, head), parts[1:], value, dotted)
    try:
        return attrs.evolve(obj, **{head: new})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f'Invalid value for "{dotted}": {_message(exc)}') from exc
