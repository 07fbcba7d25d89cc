"""The names ``rskp.propagation.method`` takes and the walks registered under new ones; the loss terms registered
for ``rskp.losses.terms``.

Kept apart from the walks and losses themselves (``walks``, ``losses``) so that the config checks a name without
loading the method: a head imports the
config, never the method's machinery.
"""

from __future__ import annotations

from typing import Any, Callable

#: The paper's walks, run by ``walks.Walk``: BiRW (eq. 6), its ablations (Table 5, Fig. 5) and the score walk.
BUILT_IN_WALKS = ("birw", "random_walk", "unrolled", "scores")

#: A walk registered under a new name: (F (B, T, d), walks [(reps (B, n_j, d), reps_mask (B, n_j) or None)],
#: mask (B, T) bool) and keyword arguments weight (w), temperature (lambda), steps -> one factored ``Propagated``
#: per walk, in order.
FeatureWalk = Callable[..., Any]

#: name -> walk, for the names ``register_walk`` added.
WALKS: dict[str, FeatureWalk] = {}


def walk_methods() -> tuple[str, ...]:
    """Every value ``rskp.propagation.method`` takes: the built-in walks, then the registered ones."""
    return (*BUILT_IN_WALKS, *WALKS)


def register_walk(name: str, walk: FeatureWalk) -> FeatureWalk:
    """Make ``walk`` the propagation method ``name`` (``rskp.propagation.method: name``); returns ``walk``."""
    if name in walk_methods():
        raise ValueError(f"rskp.propagation.method {name!r} is taken; the walks are {', '.join(walk_methods())}")
    WALKS[name] = walk
    return walk


#: The loss terms ``RSKPWrapper`` writes itself (and the prefix of the head's own ``aux/`` terms): a registered
#: term takes another name.
BUILT_IN_TERMS = ("cls/main", "att_norm", "cls/intra", "cls/inter", "distill", "feature")

#: A loss term registered under a name: ``losses.TermInputs`` (the batch and every branch of one training forward)
#: -> a scalar tensor, weighted by ``rskp.losses.terms[name]`` and RSKP's ramp-up.
LossTerm = Callable[..., Any]

#: name -> term, for the names ``register_loss_term`` added.
LOSS_TERMS: dict[str, LossTerm] = {}


def register_loss_term(name: str, term: LossTerm) -> LossTerm:
    """Make ``term`` the loss term ``name`` (``rskp.losses.terms: {name: weight}``); returns ``term``."""
    if not name.isidentifier() or name in BUILT_IN_TERMS or name in LOSS_TERMS:
        taken = ", ".join((*BUILT_IN_TERMS, *LOSS_TERMS))
        raise ValueError(f"loss term name {name!r} is taken or not an identifier; taken: {taken}")
    LOSS_TERMS[name] = term
    return term
