"""Plugin manager: discovers heads through the ``rskp_plugin`` entry-point group and builds them by name.

Every head, built-in or third-party, arrives the same way: a distribution declares an entry point in the group
``rskp_plugin`` whose value is a module (or object) with a ``register_heads`` hook implementation::

    [project.entry-points.rskp_plugin]
    toy = "rskp_head_toy"

Entry points are loaded one at a time. A plugin that fails to import (or to register with pluggy) does not stop
the others: its error is kept as a ``PluginLoadError`` naming the entry point and distribution (chained to the
original exception) and reaches the user in three ways:

* a ``PluginLoadWarning`` when the cached manager is built (once per ``refresh``);
* ``create_head(name)`` raises that ``PluginLoadError`` when ``name`` is the broken entry point's name (heads are
  conventionally named like their entry point), and an ``UnknownHeadError`` lists the broken plugins;
* ``rskp heads`` shows a "failed to load" row per broken plugin.

Typical use::

    from rskp_plugin.plugins import available_heads, create_head
    available_heads()                                   # ['bm', 'facnet', 'stpn', 'wum', ...]
    head = create_head("wum", num_classes=20, feature_dim=2048)
"""

from __future__ import annotations

import difflib
import importlib.metadata
import threading
import warnings
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import DuplicateHeadError, PluginLoadError, UnknownHeadError
from .protocols import HeadSpec

ENTRY_POINT_GROUP = hookspecs.PROJECT  # the pluggy project name is also the entry-point group


class PluginLoadWarning(UserWarning):
    """An installed plugin failed to load; the other heads are still available."""


class RSKPPluginManager(pluggy.PluginManager):
    """A ``pluggy.PluginManager`` that remembers where each plugin came from and which plugins failed to load.

    Attributes:
        distributions: plugin name -> (distribution name, version) for plugins loaded from entry points.
        load_errors: entry-point name -> the ``PluginLoadError`` raised while loading it.
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.distributions: dict[str, tuple[str, str]] = {}
        self.load_errors: dict[str, PluginLoadError] = {}

    def load_entrypoint_plugins(self, group: str = ENTRY_POINT_GROUP) -> int:
        """Load and register every entry point of ``group``, each on its own; failures go to ``load_errors``.

        Returns:
            The number of plugins registered by this call.
        """
        count = 0
        for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: (e.name, e.value)):
            dist_name, version = _dist_of(ep)
            if self.is_blocked(ep.name):
                continue
            name = ep.name if not self.has_plugin(ep.name) else f"{ep.name}[{dist_name}]"
            try:
                plugin = ep.load()
            except Exception as exc:  # any import-time failure of a third-party module
                self.load_errors[ep.name] = _load_error(ep, dist_name, version, f"failed to import: {exc!r}", exc)
                continue
            if self.is_registered(plugin):
                continue  # the same module declared twice (e.g. an editable and a regular install)
            try:
                self.register(plugin, name=name)
            except (ValueError, pluggy.PluginValidationError) as exc:
                self.load_errors[ep.name] = _load_error(ep, dist_name, version, f"could not be registered: {exc}", exc)
                continue
            self.distributions[name] = (dist_name, version)
            count += 1
        return count

    def distribution_of(self, plugin_name: str) -> str:
        """``"<distribution> <version>"`` for a plugin loaded from an entry point, else ``""``."""
        dist = self.distributions.get(plugin_name)
        return f"{dist[0]} {dist[1]}" if dist else ""


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "<unknown distribution>", "?"
    return dist.metadata["Name"] or "<unknown distribution>", dist.version or "?"


def _load_error(
    ep: importlib.metadata.EntryPoint, dist_name: str, version: str, what: str, exc: BaseException
) -> PluginLoadError:
    err = PluginLoadError(
        f'Plugin entry point "{ep.name} = {ep.value}" (group "{ep.group}") from distribution {dist_name} {version} '
        f"{what}. Its heads are unavailable; the other plugins still work. Fix or reinstall it "
        f"(pip install --force-reinstall {dist_name}), or uninstall it (pip uninstall {dist_name})."
    )
    err.__cause__ = exc  # same as ``raise err from exc`` when it is raised later
    err.entry_point, err.distribution, err.version = ep.name, dist_name, version  # for `rskp heads`
    return err


def make_plugin_manager(load_entrypoints: bool = True) -> RSKPPluginManager:
    """A fresh plugin manager for project ``rskp_plugin`` with the ``register_heads`` hookspec.

    Args:
        load_entrypoints: discover installed plugins from the ``rskp_plugin`` entry-point group. Tests pass False
            and ``register`` their own plugins.
    """
    pm = RSKPPluginManager()
    if load_entrypoints:
        pm.load_entrypoint_plugins()
    return pm


_lock = threading.Lock()
_manager: RSKPPluginManager | None = None


def get_plugin_manager(*, refresh: bool = False) -> RSKPPluginManager:
    """The process-wide cached manager; built (with entry points) on first use or when ``refresh`` is True."""
    global _manager
    with _lock:
        if _manager is None or refresh:
            pm = make_plugin_manager(load_entrypoints=True)
            for err in pm.load_errors.values():
                warnings.warn(str(err), PluginLoadWarning, stacklevel=3)
            _manager = pm
        return _manager


def refresh(plugin_manager: RSKPPluginManager | None = None) -> RSKPPluginManager:
    """Forget the cached manager and rediscover plugins (after ``pip install``), or install ``plugin_manager``.

    Passing a manager is how tests and embedding applications make ``create_head``, ``available_heads`` and the
    CLI use a hand-built manager; ``refresh()`` without arguments goes back to entry-point discovery.
    """
    global _manager
    if plugin_manager is None:
        return get_plugin_manager(refresh=True)
    with _lock:
        _manager = plugin_manager
        return plugin_manager


def _collect(pm: pluggy.PluginManager) -> dict[str, HeadSpec]:
    """Call every ``register_heads`` implementation on its own, so each spec knows the plugin that made it."""
    specs: dict[str, HeadSpec] = {}
    for impl in pm.hook.register_heads.get_hookimpls():  # registration order, so messages name the first one first
        plugin_name = impl.plugin_name
        distribution = pm.distribution_of(plugin_name) if isinstance(pm, RSKPPluginManager) else ""

        def register(spec: HeadSpec, *, _plugin: str = plugin_name, _dist: str = distribution) -> None:
            if not isinstance(spec, HeadSpec):
                raise TypeError(f"plugin {_plugin!r} called register() with {type(spec).__name__}, not a HeadSpec")
            spec = HeadSpec(name=spec.name, factory=spec.factory, summary=spec.summary, plugin=_plugin,
                            distribution=_dist)
            if spec.name in specs:
                first = specs[spec.name]
                raise DuplicateHeadError(
                    f'Head "{spec.name}" is registered twice: by plugin "{first.plugin}" '
                    f"({first.distribution or 'not from an installed distribution'}) and by plugin "
                    f'"{spec.plugin}" ({spec.distribution or "not from an installed distribution"}). '
                    "Uninstall one of the two distributions, or block one plugin with "
                    "get_plugin_manager().set_blocked(<plugin name>) before creating heads."
                )
            specs[spec.name] = spec

        kwargs = {"register": register}
        impl.function(*[kwargs[arg] for arg in impl.argnames])
    return specs


def head_specs(plugin_manager: pluggy.PluginManager | None = None) -> dict[str, HeadSpec]:
    """Every registered head by name, with ``plugin`` and ``distribution`` filled in, sorted by name.

    Raises:
        DuplicateHeadError: two plugins (or one plugin twice) register the same name.
    """
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
    return dict(sorted(_collect(pm).items()))


def available_heads(plugin_manager: pluggy.PluginManager | None = None) -> list[str]:
    """Sorted names of the registered heads."""
    return list(head_specs(plugin_manager))


def load_errors(plugin_manager: pluggy.PluginManager | None = None) -> dict[str, PluginLoadError]:
    """Entry-point name -> error, for the plugins that failed to load (empty when all loaded)."""
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
    return dict(getattr(pm, "load_errors", {}))


def _names(items: Iterable[str]) -> str:
    return ", ".join(sorted(items)) or "(none)"


def create_head(name: str, *, plugin_manager: pluggy.PluginManager | None = None, **kwargs: Any) -> Any:
    """Build the head registered as ``name``: ``create_head("wum", num_classes=20, feature_dim=2048)``.

    Args:
        name: a name from ``available_heads()``.
        plugin_manager: use this manager instead of the cached one.
        **kwargs: passed to the head's factory; every argument not given keeps the head's (official) default.

    Raises:
        UnknownHeadError: no plugin registers ``name`` (the message suggests the closest name and lists all).
        PluginLoadError: the plugin whose entry point is called ``name`` failed to load.
        DuplicateHeadError: two plugins register the same name.
    """
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
    specs = head_specs(pm)
    spec = specs.get(name)
    if spec is None:
        broken = load_errors(pm)
        if name in broken:
            raise broken[name]
        close = difflib.get_close_matches(name, list(specs), n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ""
        msg = f'Unknown head "{name}".{hint} Installed: {_names(specs)}.'
        if broken:
            msg += f" Plugins that failed to load (see `rskp heads`): {_names(broken)}."
        raise UnknownHeadError(msg)
    return spec.factory(**kwargs)
