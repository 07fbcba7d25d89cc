"""Hook specifications: every hook has a ``test_hook_<name>`` test and a docs entry; the hooks behave as documented."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pluggy
import pytest

from rskp_plugin import HeadSpec, hookspecs
from rskp_plugin.plugins import head_specs, load_errors, make_plugin_manager

ROOT = Path(__file__).resolve().parents[1]


def hook_names() -> list[str]:
    """Names of the functions in ``rskp_plugin.hookspecs`` marked as hook specifications."""
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(obj, marker))


def defined_test_names() -> set[str]:
    names = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    return names


def docs_text() -> str:
    paths = [ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    return "\n".join(p.read_text(encoding="utf-8") for p in paths if p.exists())


def test_hooks_are_discovered():
    assert "register_heads" in hook_names()  # the meta-tests below must see the hooks, or they prove nothing


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_has_a_test_and_a_docs_entry(name):
    assert f"test_hook_{name}" in defined_test_names(), f"hook {name!r} needs a test called test_hook_{name}"
    heading = re.compile(rf"^#+ .*`{name}`", re.MULTILINE)
    assert heading.search(docs_text()), f"hook {name!r} needs a docs section: a Markdown heading naming `{name}`"


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_has_a_docstring_and_keyword_arguments(name):
    spec = getattr(hookspecs, name)
    assert inspect.getdoc(spec), f"hook {name!r} needs a docstring"
    params = inspect.signature(spec).parameters.values()
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)


def test_hookspecs_module_is_import_light():
    """Only pluggy and typing at run time; annotation-only imports live under ``if TYPE_CHECKING:``."""
    tree = ast.parse(Path(hookspecs.__file__).read_text(encoding="utf-8"))
    runtime = []
    for node in tree.body:  # top-level statements only; the TYPE_CHECKING block is an ast.If
        if isinstance(node, ast.Import):
            runtime += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            runtime.append("." * node.level + (node.module or ""))
    assert set(runtime) <= {"__future__", "typing", "pluggy"}


# ------------------------------------------------------------------------------------------------ register_heads
def test_hook_register_heads():
    """Called by keyword with a ``register`` callback; every implementation runs; arguments may be omitted."""
    pm = make_plugin_manager(load_entrypoints=False)
    seen = []

    class Full:
        @hookspecs.hookimpl
        def register_heads(self, register):
            register(HeadSpec(name="full", factory=dict, summary="uses the argument"))

    class NoArgs:
        @hookspecs.hookimpl
        def register_heads(self):  # pluggy lets an implementation take fewer arguments
            seen.append("noargs")

    pm.register(Full(), name="full")
    pm.register(NoArgs(), name="noargs")
    registered = []
    assert pm.hook.register_heads(register=registered.append) == []  # not firstresult; implementations return None
    assert [s.name for s in registered] == ["full"] and seen == ["noargs"]
    with pytest.raises(TypeError):
        pm.hook.register_heads(registered.append)  # keyword only
    assert list(head_specs(pm)) == ["full"]


def test_hook_register_heads_rejects_unknown_arguments():
    pm = make_plugin_manager(load_entrypoints=False)

    class Wrong:
        @hookspecs.hookimpl
        def register_heads(self, register, extra):
            pass

    with pytest.raises(pluggy.PluginValidationError):
        pm.register(Wrong(), name="wrong")
    assert load_errors(pm) == {}
