"""The names ``rskp.propagation.method`` takes and the walks registered under new ones.

Kept apart from the walks themselves (``walks``) so that the config checks a name without loading the method:
a head imports the config, never the method's machinery.
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
