"""Conformance kit for head authors: ``check_head(factory)`` checks that a head follows the Head protocol in behaviour.

Call it from your own test suite::

    import functools
    from rskp_plugin.testing import check_head
    from rskp_head_toy import ToyHead

    def test_toy_head_conforms():
        check_head(functools.partial(ToyHead, embed_dim=16))

``factory(num_classes=C, feature_dim=D)`` must build a fresh head (pass other arguments with ``functools.partial``;
a small embedding keeps the check fast). Every property is checked on the same tiny padded batch; all failures are
collected and raised together as one ``HeadCheckError`` (an ``AssertionError``) naming each failed property and the
shapes it ran on.

Symbols: B batch, T snippets, D input feature size, d embedding size, C action classes.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from .head_checks import CHECK_FUNCTIONS, CheckCase, CheckFailure

CHECKS = (
    "structure",
    "shapes_and_dtypes",
    "float64",
    "mask_handling",
    "padded_batch_equals_single",
    "snippetwise_classify",
    "optional_members",
    "factored_branches",
    "finite_gradients",
    "scalar_losses",
    "determinism",
    "state_dict_round_trip",
    "rskp_wrapper_step",
)


def _where(exc: BaseException) -> str:
    """`` (at file:line in function: `source line`)`` of the frame that raised ``exc``: where in the head it broke."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {last.filename}:{last.lineno} in {last.name}: `{(last.line or '').strip()}`)"


class HeadCheckError(AssertionError):
    """A head broke one or more properties of the Head protocol (the message lists each)."""


def check_head(
    factory: Callable[..., Any],
    *,
    num_classes: int = 3,
    feature_dim: int = 16,
    lengths: Sequence[int] = (9, 5, 7),
    seed: int = 0,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    checks: Sequence[str] | None = None,
) -> list[str]:
    """Check that the heads built by ``factory`` follow the Head protocol; raise ``HeadCheckError`` if not.

    Properties (names as in ``CHECKS``): ``structure`` (an nn.Module with int ``num_classes``/``embed_dim``, the
    protocol's methods, ``localization`` a LocalizationSettings or None); ``shapes_and_dtypes`` (embed (B, T, d)
    and zero on padding; video_scores (B, C) and attention (B, T) in [0, 1]; tcam (B, T, C or C+1); cas (B, T, C);
    finite on real snippets; ``classify`` has tcam's columns); ``float64`` (float64 inputs give float64 outputs
    and losses); ``mask_handling`` (garbage in padded snippets changes no output on real snippets and no loss);
    ``padded_batch_equals_single`` (each video of a padded batch gives its outputs alone, and the batch losses are
    the mean of the per-video losses); ``snippetwise_classify`` (permuting snippets permutes ``classify``'s
    output; any leading shape works); ``optional_members`` (no RSKP setting declared as a class attribute: those
    belong in the head's recipe, ``HeadSpec(recipe=...)``;
    ``representative_scores`` gives (B, n, C) probabilities, ``fuse`` keeps the shapes and fusing two equal branches
    with weights summing to 1 keeps the video scores); ``factored_branches`` (where ``forward_branches`` is defined:
    its outputs and the gradients of the losses through them equal the head run on each ``Propagated.dense()``,
    float64); ``finite_gradients`` (the head's losses reach every parameter with finite
    gradients); ``scalar_losses`` (``classification_loss`` and each ``auxiliary_loss`` term are finite scalars that
    depend on the parameters); ``determinism`` (the same seed gives the same parameters and training-mode
    outputs); ``state_dict_round_trip`` (a saved and reloaded state_dict reproduces the outputs);
    ``rskp_wrapper_step`` (``RSKPWrapper(head)`` runs a training step, before and after the memory bank is filled,
    with a finite scalar loss and finite gradients). Equality checks run in eval mode; torch runs on one thread
    during the check (the global RNG state and thread count are restored afterwards).

    Args:
        factory: ``factory(num_classes=C, feature_dim=D)`` returns a new head.
        num_classes: C for the check (at least 2).
        feature_dim: D for the check.
        lengths: real lengths of the videos of the padded batch (B = len(lengths), T = max(lengths)).
        seed: seed of the random features.
        atol: absolute tolerance of the equality checks.
        rtol: relative tolerance of the equality checks.
        checks: run only these properties (default: all of ``CHECKS``).

    Returns:
        The names of the properties checked (all passed).

    Raises:
        HeadCheckError: one line per failed property, with the shapes it ran on.
    """
    names = list(CHECKS if checks is None else checks)
    unknown = [n for n in names if n not in CHECK_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; choose from {', '.join(CHECKS)}")
    case = CheckCase(num_classes, feature_dim, lengths, seed)
    failures = []
    rng_state, threads = torch.get_rng_state(), torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only cost time (10x on a busy machine)
    try:
        for name in names:
            try:
                CHECK_FUNCTIONS[name](factory, case, num_classes, feature_dim, atol=atol, rtol=rtol)
            except CheckFailure as exc:
                failures.append(f"{name} [{case.shapes}]: {exc}")
            except Exception as exc:  # a crash inside the head is a failure of this property, reported as such
                failures.append(f"{name} [{case.shapes}]: raised {type(exc).__name__}: {exc}{_where(exc)}")
    finally:
        torch.set_rng_state(rng_state)
        torch.set_num_threads(threads)
    if failures:
        raise HeadCheckError(f"{len(failures)} Head protocol check(s) failed:\n  " + "\n  ".join(failures))
    return names
