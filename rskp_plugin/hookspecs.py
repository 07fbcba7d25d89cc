"""pluggy hook specifications. One hook: ``register_heads``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from .protocols import HeadSpec

PROJECT = "rskp_plugin"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_heads(register: "Callable[[HeadSpec], None]") -> None:
    """Register heads: call ``register(HeadSpec(...))`` once per head. Names are unique across all plugins."""
