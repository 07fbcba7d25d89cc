"""Plugin manager: registration, lookup, error messages, entry-point loading (faked), the cache and `rskp heads`.

Only ``test_installed_built_in_heads`` looks at what is really installed; the rest builds managers by hand or fakes
``importlib.metadata.entry_points``.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rich.console import Console

from rskp_plugin import DuplicateHeadError, HeadSpec, PluginLoadError, UnknownHeadError, plugins
from rskp_plugin.commands import heads as commands_heads
from rskp_plugin.cli import main
from rskp_plugin.hookspecs import hookimpl
from rskp_plugin.plugins import (
    PluginLoadWarning,
    available_heads,
    create_head,
    get_plugin_manager,
    head_errors,
    head_specs,
    load_errors,
    make_plugin_manager,
)


class Made:
    """What the fake factories return: records the keywords."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs


class FourHeads:
    """A plugin object registering four heads with the built-in names."""

    @hookimpl
    def register_heads(self, register):
        for name in ("wum", "bm", "stpn", "facnet"):  # deliberately unsorted
            register(HeadSpec(name=name, factory=Made, summary=f"fake {name}"))


@pytest.fixture
def pm():
    manager = make_plugin_manager(load_entrypoints=False)
    plugin = FourHeads()
    manager.register(plugin, name="four")
    yield manager
    if manager.is_registered(plugin):
        manager.unregister(plugin)


@pytest.fixture
def restore_cache(monkeypatch):
    """Tests that replace the process-wide manager get the old one back afterwards; the CLI prints wide."""
    monkeypatch.setattr(plugins, "_manager", plugins._manager)
    monkeypatch.setattr(commands_heads, "console", Console(width=250))


# ------------------------------------------------------------------------------------------- hand-built managers
def test_available_heads_is_sorted(pm):
    assert available_heads(pm) == ["bm", "facnet", "stpn", "wum"]
    assert list(head_specs(pm)) == ["bm", "facnet", "stpn", "wum"]


def test_specs_name_the_plugin(pm):
    spec = head_specs(pm)["wum"]
    assert (spec.plugin, spec.summary, spec.distribution) == ("four", "fake wum", "")


def test_create_head_passes_keywords(pm):
    head = create_head("wum", plugin_manager=pm, num_classes=20, feature_dim=2048)
    assert isinstance(head, Made) and head.kwargs == {"num_classes": 20, "feature_dim": 2048}


def test_unknown_head_suggests_and_lists(pm):
    with pytest.raises(UnknownHeadError) as info:
        create_head("wun", plugin_manager=pm)
    assert str(info.value) == 'Unknown head "wun". Did you mean "wum"? Installed: bm, facnet, stpn, wum.'
    assert isinstance(info.value, LookupError)
    with pytest.raises(UnknownHeadError, match=r'^Unknown head "zzz"\. Installed: bm, facnet'):
        create_head("zzz", plugin_manager=pm)


def test_unregistering_removes_heads(pm):
    pm.unregister(name="four")
    assert available_heads(pm) == []
    with pytest.raises(UnknownHeadError, match=r"Installed: \(none\)\."):
        create_head("wum", plugin_manager=pm)


def test_duplicate_name_blocks_only_that_name(pm):
    class Clash:
        @hookimpl
        def register_heads(self, register):
            register(HeadSpec(name="wum", factory=Made))

    pm.register(Clash(), name="clash")
    assert available_heads(pm) == ["bm", "facnet", "stpn"]  # every other head keeps working
    assert isinstance(create_head("facnet", plugin_manager=pm), Made)
    with pytest.raises(DuplicateHeadError) as info:
        create_head("wum", plugin_manager=pm)
    assert 'Head "wum" is registered twice: by plugin "four"' in str(info.value)
    assert 'by plugin "clash"' in str(info.value) and "neither is used" in str(info.value)
    assert list(head_errors(pm)) == ["wum"] and isinstance(head_errors(pm)["wum"], ValueError)


class Raises:
    @hookimpl
    def register_heads(self, register):
        register(HeadSpec(name="half", factory=Made))  # registered before the failure: not used either
        raise RuntimeError("the author forgot a file")


class Sloppy:
    @hookimpl
    def register_heads(self, register):
        register({"name": "x"})
        register(HeadSpec(name="y", factory=Made))


@pytest.mark.parametrize(("plugin", "message"), [
    (Raises(), r"failed in register_heads: RuntimeError\('the author forgot a file'\)"),
    (Sloppy(), r"called register\(\) with a dict, not a rskp_plugin\.HeadSpec"),
])
def test_a_broken_register_heads_is_isolated(pm, plugin, message):
    pm.register(plugin, name="broken")
    assert available_heads(pm) == ["bm", "facnet", "stpn", "wum"]  # none of the broken plugin's heads
    assert isinstance(create_head("wum", plugin_manager=pm), Made)
    err = head_errors(pm)["broken"]
    assert isinstance(err, PluginLoadError) and list(head_errors(pm)) == ["broken"]
    assert re.search(rf'Plugin "broken" \(not from an installed distribution\) {message}\. Its heads are unavailable',
                     str(err))
    with pytest.raises(PluginLoadError, match=message):
        create_head("broken", plugin_manager=pm)
    with pytest.raises(UnknownHeadError, match=r"Plugins that failed to load \(see `rskp heads`\): broken\."):
        create_head("half", plugin_manager=pm)


# ------------------------------------------------------------------------------------------ faked entry points
@dataclass
class FakeDist:
    name: str
    version: str

    @property
    def metadata(self):
        return {"Name": self.name}


@dataclass
class FakeEntryPoint:
    """Duck-typed importlib.metadata.EntryPoint with a distribution attached."""

    name: str
    value: str
    dist: FakeDist
    group: str = "rskp_plugin"
    real: importlib.metadata.EntryPoint = field(init=False)

    def __post_init__(self):
        self.real = importlib.metadata.EntryPoint(self.name, self.value, self.group)

    def load(self):
        return self.real.load()


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    """Three modules on sys.path (good, broken on import, clashing with good) and a hook to list entry points."""
    (tmp_path / "rskp_fake_good.py").write_text(textwrap.dedent("""
        from rskp_plugin import HeadSpec
        from rskp_plugin.hookspecs import hookimpl

        @hookimpl
        def register_heads(register):
            register(HeadSpec(name="good", factory=dict, summary="A good fake head."))
    """))
    (tmp_path / "rskp_fake_broken.py").write_text("import numpy\nraise RuntimeError('the author forgot a file')\n")
    (tmp_path / "rskp_fake_clash.py").write_text(textwrap.dedent("""
        from rskp_plugin import HeadSpec
        from rskp_plugin.hookspecs import hookimpl

        @hookimpl
        def register_heads(register):
            register(HeadSpec(name="good", factory=list))
    """))
    (tmp_path / "rskp_fake_raises.py").write_text(textwrap.dedent("""
        from rskp_plugin.hookspecs import hookimpl

        @hookimpl
        def register_heads(register):
            raise KeyError("[/data] has no weights")  # brackets: rich markup must not eat or choke on them
    """))
    (tmp_path / "rskp_fake_sloppy.py").write_text(textwrap.dedent("""
        from rskp_plugin.hookspecs import hookimpl

        @hookimpl
        def register_heads(register):
            register({"name": "sloppy"})
    """))
    (tmp_path / "rskp_fake_invalid.py").write_text(textwrap.dedent("""
        from rskp_plugin.hookspecs import hookimpl

        @hookimpl
        def register_heads(register, colour):  # not an argument of the hookspec
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield_names = ["rskp_fake_invalid", "rskp_fake_raises", "rskp_fake_sloppy"]

    def install(*eps: FakeEntryPoint) -> None:
        def entry_points(**selection):
            assert selection == {"group": "rskp_plugin"}
            return list(eps)

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    yield install
    for name in ("rskp_fake_good", "rskp_fake_broken", "rskp_fake_clash", *yield_names):
        sys.modules.pop(name, None)


GOOD = FakeEntryPoint("good", "rskp_fake_good", FakeDist("rskp-head-good", "1.2.3"))
BROKEN = FakeEntryPoint("broken", "rskp_fake_broken", FakeDist("rskp-head-broken", "0.0.1"))
CLASH = FakeEntryPoint("clash", "rskp_fake_clash", FakeDist("rskp-head-clash", "2.0"))
RAISES = FakeEntryPoint("raises", "rskp_fake_raises", FakeDist("rskp-head-raises", "0.3"))
SLOPPY = FakeEntryPoint("sloppy", "rskp_fake_sloppy", FakeDist("rskp-head-sloppy", "4.5"))


def test_entry_points_fill_distribution(fake_plugins):
    fake_plugins(GOOD)
    pm = make_plugin_manager()
    spec = head_specs(pm)["good"]
    assert (spec.plugin, spec.distribution, spec.summary) == ("good", "rskp-head-good 1.2.3", "A good fake head.")
    assert create_head("good", plugin_manager=pm, a=1) == {"a": 1}


def test_broken_plugin_does_not_stop_the_others(fake_plugins):
    fake_plugins(BROKEN, GOOD)
    pm = make_plugin_manager()
    assert available_heads(pm) == ["good"]
    err = load_errors(pm)["broken"]
    assert isinstance(err, PluginLoadError) and isinstance(err, ImportError)
    assert 'entry point "broken = rskp_fake_broken"' in str(err) and "rskp-head-broken 0.0.1" in str(err)
    assert isinstance(err.__cause__, RuntimeError) and "forgot a file" in str(err.__cause__)
    with pytest.raises(PluginLoadError, match="rskp-head-broken") as info:  # asking for the broken head
        create_head("broken", plugin_manager=pm)
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(UnknownHeadError, match=r"Plugins that failed to load \(see `rskp heads`\): broken\."):
        create_head("other", plugin_manager=pm)


def test_invalid_hook_implementation_is_a_load_error(fake_plugins):
    fake_plugins(FakeEntryPoint("invalid", "rskp_fake_invalid", FakeDist("rskp-head-invalid", "1")), GOOD)
    pm = make_plugin_manager()
    assert available_heads(pm) == ["good"]
    err = load_errors(pm)["invalid"]
    assert "could not be registered" in str(err) and "rskp-head-invalid 1" in str(err)
    assert "colour" in str(err.__cause__)


def test_clashing_plugins_name_both_distributions(fake_plugins):
    fake_plugins(GOOD, CLASH)
    pm = make_plugin_manager()
    assert available_heads(pm) == []  # "good" is the only name and both register it
    with pytest.raises(DuplicateHeadError) as info:
        create_head("good", plugin_manager=pm)
    message = str(info.value)
    assert 'plugin "clash" (rskp-head-clash 2.0)' in message and 'plugin "good" (rskp-head-good 1.2.3)' in message
    assert "Uninstall one of the two distributions" in message
    assert head_errors(pm)["good"] is not None and load_errors(pm) == {}


def test_same_entry_point_name_in_two_distributions(fake_plugins):
    twin = FakeEntryPoint("good", "rskp_fake_clash", FakeDist("rskp-head-twin", "9"))
    fake_plugins(GOOD, twin)
    message = str(head_errors(make_plugin_manager())["good"])
    # the second plugin called "good" is registered as "good[<its distribution>]"
    assert "(rskp-head-twin 9)" in message and "(rskp-head-good 1.2.3)" in message and '"good[' in message


def test_broken_register_heads_from_a_distribution(fake_plugins):
    fake_plugins(RAISES, SLOPPY, GOOD)
    pm = make_plugin_manager()
    assert available_heads(pm) == ["good"] and load_errors(pm) == {}  # they imported fine
    errors = head_errors(pm)
    assert list(errors) == ["raises", "sloppy"]
    assert 'Plugin "raises" from distribution rskp-head-raises 0.3 failed in register_heads' in str(errors["raises"])
    assert "pip uninstall rskp-head-raises" in str(errors["raises"])
    assert isinstance(errors["raises"].__cause__, KeyError)
    assert (errors["sloppy"].distribution, errors["sloppy"].version) == ("rskp-head-sloppy", "4.5")
    with pytest.raises(PluginLoadError, match="rskp-head-sloppy 4.5 called register"):
        create_head("sloppy", plugin_manager=pm)


def test_blocked_plugin_is_skipped(fake_plugins):
    fake_plugins(GOOD, CLASH)
    pm = make_plugin_manager(load_entrypoints=False)
    pm.set_blocked("clash")
    pm.load_entrypoint_plugins()
    assert head_specs(pm)["good"].factory is dict


def test_cached_manager_warns_once_and_refreshes(fake_plugins, restore_cache):
    fake_plugins(BROKEN, GOOD)
    with pytest.warns(PluginLoadWarning, match="rskp-head-broken"):
        first = get_plugin_manager(refresh=True)
    assert get_plugin_manager() is first  # cached: no second import, no second warning
    assert available_heads() == ["good"]
    fake_plugins(GOOD)
    assert plugins.refresh() is not first
    assert available_heads() == ["good"] and load_errors() == {}


def test_refresh_installs_a_given_manager(pm, restore_cache):
    assert plugins.refresh(pm) is pm
    assert available_heads() == ["bm", "facnet", "stpn", "wum"]


# ----------------------------------------------------------------------------------------------------- rskp heads
def test_cli_heads_table(fake_plugins, restore_cache, capsys):
    fake_plugins(GOOD, BROKEN)
    with pytest.warns(PluginLoadWarning):
        plugins.refresh()
    assert main(["heads"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    row = next(line for line in lines if " good " in line)
    assert "rskp-head-good" in row and "1.2.3" in row and "A good fake head." in row
    broken = next(line for line in lines if " broken " in line)
    assert "rskp-head-broken" in broken and "0.0.1" in broken and "failed to load" in broken


def test_cli_heads_sorted(pm, restore_cache, capsys):
    plugins.refresh(pm)
    assert main(["heads"]) == 0
    out = capsys.readouterr().out
    positions = [out.index(f" {name} ") for name in ("bm", "facnet", "stpn", "wum")]
    assert positions == sorted(positions)


def test_cli_heads_shows_every_problem_as_a_row(fake_plugins, restore_cache, capsys):
    fake_plugins(GOOD, CLASH, RAISES, SLOPPY, FakeEntryPoint("other", "rskp_fake_other", FakeDist("rskp-head-o", "1")))
    Path(sys.path[0], "rskp_fake_other.py").write_text(textwrap.dedent("""
        from rskp_plugin import HeadSpec
        from rskp_plugin.hookspecs import hookimpl

        @hookimpl
        def register_heads(register):
            register(HeadSpec(name="other", factory=dict, summary="Still works."))
    """))
    with pytest.warns(PluginLoadWarning):
        plugins.refresh()
    assert main(["heads"]) == 0
    lines = capsys.readouterr().out.splitlines()
    sys.modules.pop("rskp_fake_other", None)
    row = {name: next(line for line in lines if line.startswith(f"│ {name} ")) for name in ("other", "good", "raises",
                                                                                         "sloppy")}
    assert "Still works." in row["other"] and "rskp-head-o" in row["other"]
    assert "registered twice, unusable" in row["good"] and "rskp-head-clash, rskp-head-good" in row["good"]
    assert "failed to load" in row["raises"] and "rskp-head-raises" in row["raises"] and "0.3" in row["raises"]
    assert "KeyError" in row["raises"] and "[/data] has no weights" in row["raises"]  # escaped, not eaten
    assert "failed to load" in row["sloppy"] and "rskp-head-sloppy" in row["sloppy"] and "dict" in row["sloppy"]


def test_cli_train_with_a_broken_plugin(fake_plugins, restore_cache, capsys, tmp_path, monkeypatch):
    """Training a head of a working plugin is not stopped by a broken one; the broken one is a one-line error."""
    fake_plugins(GOOD, SLOPPY)
    with pytest.warns(PluginLoadWarning):
        plugins.refresh()
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--head", "sloppy", "--no-progress"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error:") and 'Plugin "sloppy" from distribution rskp-head-sloppy 4.5' in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------------- integration
def test_installed_built_in_heads():
    """The one test that reads the real installation: the four built-in heads come from this distribution."""
    pm = make_plugin_manager()
    specs = head_specs(pm)
    version = importlib.metadata.version("rskp-plugin")
    for name in ("bm", "facnet", "stpn", "wum"):
        assert specs[name].distribution == f"rskp-plugin {version}"
        assert specs[name].plugin == name
        assert specs[name].summary
    assert load_errors(pm) == {}
    head = create_head("wum", plugin_manager=pm, num_classes=20, feature_dim=2048)
    assert type(head).__module__ == "rskp_heads.wum"
    assert (head.num_classes, head.feature_dim, head.embed_dim, head.margin) == (20, 2048, 2048, 100.0)
