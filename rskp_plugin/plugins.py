"""Plugin manager: discovers heads through the ``rskp_plugin`` entry-point group and builds them by name.

Every head, built-in or third-party, arrives the same way: a distribution declares an entry point in the group
``rskp_plugin`` whose value is a module (or object) with a ``register_heads`` hook implementation::

    [project.entry-points.rskp_plugin]
    toy = "rskp_head_toy"

Entry points are loaded one at a time, and each plugin's ``register_heads`` is called on its own. A plugin that fails
to import, to register with pluggy or in ``register_heads`` (an exception, ``SystemExit`` included: anything but
``KeyboardInterrupt``; or ``register`` called with something other than a ``HeadSpec``) does not stop the others:
its error is a ``PluginLoadError`` naming the plugin and its distribution (chained to the original exception). A
head name registered by two plugins is left out (only that name) with a ``DuplicateHeadError`` naming both plugins
and distributions. ``head_errors()`` lists them all, and they reach the user in three ways:

* a ``PluginLoadWarning`` when the cached manager is built (once per ``refresh``);
* ``create_head(name)`` raises that error when ``name`` is the broken plugin's name (heads are conventionally named
  like their entry point) or the clashing head name, and an ``UnknownHeadError`` lists the broken plugins;
* ``rskp heads`` shows a failed row per broken plugin or clashing name.

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

import attrs
import pluggy

from . import hookspecs
from .config import check_values
from .errors import ConfigError, DuplicateHeadError, PluginLoadError, RSKPError, UnknownHeadError
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
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # any import-time failure of a third-party module, sys.exit() included
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
            for err in head_errors(pm).values():  # import failures, failing register_heads, clashing names
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


def _register_error(plugin: str, distribution: str, what: str, exc: BaseException) -> PluginLoadError:
    """The error of a plugin whose ``register_heads`` failed, with ``rskp heads``' attributes."""
    dist_name, _, version = distribution.partition(" ")
    where = f"from distribution {distribution}" if distribution else "(not from an installed distribution)"
    fix = (f" Fix or reinstall it (pip install --force-reinstall {dist_name}), or uninstall it (pip uninstall "
           f"{dist_name})." if distribution else " Fix it or unregister it.")
    err = PluginLoadError(
        f'Plugin "{plugin}" {where} {what}. Its heads are unavailable; the other plugins still work.{fix}'
    )
    err.__cause__ = exc
    err.entry_point, err.distribution, err.version = plugin, dist_name or "-", version or "-"
    return err


def _duplicate_error(name: str, claims: list[HeadSpec]) -> DuplicateHeadError:
    """The error of a head name registered more than once; the name is blocked, every other head still works."""
    by = " and by ".join(
        f'plugin "{spec.plugin}" ({spec.distribution or "not from an installed distribution"})' for spec in claims
    )
    err = DuplicateHeadError(
        f'Head "{name}" is registered twice: by {by}, so neither is used (the other heads still work). '
        "Uninstall one of the two distributions, or block one plugin with "
        "get_plugin_manager().set_blocked(<plugin name>) before creating heads."
    )
    dists = [spec.distribution.partition(" ") for spec in claims]
    err.distribution = ", ".join(d[0] or "-" for d in dists)
    err.version = ", ".join(d[2] or "-" for d in dists)
    return err


def _collect(pm: pluggy.PluginManager) -> tuple[dict[str, HeadSpec], dict[str, RSKPError]]:
    """Call every ``register_heads`` implementation on its own, so each spec knows the plugin that made it.

    A plugin whose hook raises, or that registers something other than a ``HeadSpec``, contributes no head and an
    error under its plugin name; a head name registered more than once is left out, with an error under that name.

    Returns:
        (name -> spec of the usable heads, name -> error of the broken plugins and clashing names).
    """
    claims: dict[str, list[HeadSpec]] = {}
    failed: dict[str, RSKPError] = {}
    for impl in pm.hook.register_heads.get_hookimpls():  # registration order, so messages name the first one first
        plugin_name = impl.plugin_name
        distribution = pm.distribution_of(plugin_name) if isinstance(pm, RSKPPluginManager) else ""
        mine: list[HeadSpec] = []
        wrong: list[object] = []

        def register(spec: HeadSpec, *, _plugin: str = plugin_name, _dist: str = distribution,
                     _mine: list = mine, _wrong: list = wrong) -> None:
            if not isinstance(spec, HeadSpec):
                _wrong.append(spec)
                return
            _mine.append(attrs.evolve(spec, plugin=_plugin, distribution=_dist))

        kwargs = {"register": register}
        try:
            impl.function(*[kwargs[arg] for arg in impl.argnames])
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a third-party hook may raise anything (SystemExit too): the others stay up
            failed[plugin_name] = _register_error(plugin_name, distribution, f"failed in register_heads: {exc!r}", exc)
            continue
        if wrong:
            what = f"called register() with a {type(wrong[0]).__name__}, not a rskp_plugin.HeadSpec"
            failed[plugin_name] = _register_error(plugin_name, distribution, what, TypeError(what))
            continue
        try:  # a recipe with an unknown key or a bad value would fail every run of the head: refuse it here
            for spec in mine:
                check_values(spec.recipe, source=f'head "{spec.name}"\'s recipe')
        except ConfigError as exc:
            failed[plugin_name] = _register_error(plugin_name, distribution, f"registered a bad recipe: {exc}", exc)
            continue
        for spec in mine:
            claims.setdefault(spec.name, []).append(spec)
    specs = {name: spec[0] for name, spec in claims.items() if len(spec) == 1}
    for name, spec in claims.items():
        if len(spec) > 1:
            failed.setdefault(name, _duplicate_error(name, spec))
    return specs, failed


def head_specs(plugin_manager: pluggy.PluginManager | None = None) -> dict[str, HeadSpec]:
    """Every usable registered head by name, with ``plugin`` and ``distribution`` filled in, sorted by name.

    Heads of a plugin whose ``register_heads`` fails and names registered twice are left out; ``head_errors``
    says why.
    """
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
    return dict(sorted(_collect(pm)[0].items()))


def available_heads(plugin_manager: pluggy.PluginManager | None = None) -> list[str]:
    """Sorted names of the usable registered heads."""
    return list(head_specs(plugin_manager))


def load_errors(plugin_manager: pluggy.PluginManager | None = None) -> dict[str, PluginLoadError]:
    """Entry-point name -> error, for the plugins that failed to load (empty when all loaded)."""
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
    return dict(getattr(pm, "load_errors", {}))


def head_errors(plugin_manager: pluggy.PluginManager | None = None) -> dict[str, RSKPError]:
    """Name -> error for everything that is not a usable head, sorted by name: plugins that failed to load
    (``PluginLoadError``, under the entry-point name), plugins whose ``register_heads`` failed or registered a
    non-``HeadSpec`` (``PluginLoadError``, under the plugin name) and head names registered twice
    (``DuplicateHeadError``, under the head name). Each error has ``distribution`` and ``version`` attributes.
    """
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
    errors: dict[str, RSKPError] = dict(load_errors(pm))
    for name, err in _collect(pm)[1].items():
        errors.setdefault(name, err)
    return dict(sorted(errors.items()))


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
        PluginLoadError: the plugin called ``name`` (its entry point) failed to load or to register its heads.
        DuplicateHeadError: two plugins register ``name`` (other names are unaffected).
    """
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
    specs, failed = _collect(pm)
    spec = specs.get(name)
    if spec is None:
        broken = {**failed, **load_errors(pm)}
        if name in broken:
            raise broken[name]
        close = difflib.get_close_matches(name, list(specs), n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ""
        msg = f'Unknown head "{name}".{hint} Installed: {_names(specs)}.'
        plugins_failed = [n for n, err in broken.items() if not isinstance(err, DuplicateHeadError)]
        if plugins_failed:
            msg += f" Plugins that failed to load (see `rskp heads`): {_names(plugins_failed)}."
        clashes = [n for n, err in broken.items() if isinstance(err, DuplicateHeadError)]
        if clashes:
            msg += f" Registered twice, so unusable: {_names(clashes)}."
        raise UnknownHeadError(msg)
    return spec.factory(**kwargs)


def unaccepted_options(name: str, options: Iterable[str], *,
                       plugin_manager: pluggy.PluginManager | None = None) -> list[str]:
    """The keywords of ``options`` that the factory of head ``name`` has no parameter for, read from its signature
    (sorted). None are reported when it takes ``**kwargs``, when its signature cannot be read, or when ``name`` is
    not a usable head (``create_head`` names that problem)."""
    import inspect

    pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
    spec = _collect(pm)[0].get(name)
    if spec is None:
        return []
    try:
        params = inspect.signature(spec.factory).parameters.values()
    except (TypeError, ValueError):
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return []
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = {p.name for p in params if p.kind in keyword}
    return sorted(k for k in options if k not in named)
