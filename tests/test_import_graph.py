"""The package's import graph: no import cycle, and no module reaches into another module's private names (by import,
by attribute of an imported module, or by attribute of another module's object).

Every module of ``rskp_plugin`` and of the built-in heads (``heads/``, installed as ``rskp_heads``) is parsed with
``ast``; imports count wherever they stand (module level, inside functions, under ``if TYPE_CHECKING:``), because
an import inside a function is still a dependency. Nothing is imported, so the test takes well under a second.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"rskp_plugin": ROOT / "rskp_plugin", "rskp_heads": ROOT / "heads"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package ``__init__``) for every module of the project's packages."""
    out: dict[str, tuple[Path, bool]] = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            out[".".join([package, *parts])] = (path, is_package)
    return out


MODULES = _modules()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _package_of(module: str) -> str:
    return module if MODULES[module][1] else module.rpartition(".")[0]


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name an ``ImportFrom`` names (its ``from`` part)."""
    if not node.level:
        return node.module or ""
    base = _package_of(module).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _project(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


class _Imports(ast.NodeVisitor):
    """The project modules a module imports, and its uses of other modules' private names."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.edges: set[str] = set()
        self.aliases: dict[str, str] = {}  # local name -> the project module it is bound to
        self.offences: list[str] = []

    def _offend(self, line: int, what: str) -> None:
        self.offences.append(f"{self.module}:{line}: {what}")

    def _check_private_module(self, target: str, line: int) -> None:
        """A private module (``_io``) may be imported by the modules of its own package only."""
        parts = target.split(".")
        for i, part in enumerate(parts):
            if _private(part) and not (_package_of(self.module) + ".").startswith(".".join(parts[:i]) + "."):
                self._offend(line, f"imports the private module {target}")
                return

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not _project(alias.name):
                continue
            self.edges.add(alias.name)
            self._check_private_module(alias.name, node.lineno)
            self.aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = _absolute(self.module, node)
        if not _project(source):
            return
        self._check_private_module(source, node.lineno)
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            if sub in MODULES:  # ``from package import module``
                self.edges.add(sub)
                self.aliases[alias.asname or alias.name] = sub
                self._check_private_module(sub, node.lineno)
                continue
            self.edges.add(source)
            if _private(alias.name) and source != self.module:
                self._offend(node.lineno, f"imports the private name {alias.name} from {source}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain: list[str] = []
        value: ast.expr = node
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in self.aliases:
            target = self.aliases[value.id]
            for attr in reversed(chain):
                if f"{target}.{attr}" in MODULES:
                    target = f"{target}.{attr}"
                    continue
                if _private(attr) and target != self.module:
                    self._offend(node.lineno, f"uses the private name {attr} of {target}")
                break
            return  # the chain was walked whole; do not visit its inner attributes again
        self.generic_visit(node)


def _scan() -> tuple[dict[str, set[str]], list[str]]:
    graph: dict[str, set[str]] = {}
    offences: list[str] = []
    for module, (path, _) in MODULES.items():
        visitor = _Imports(module)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        graph[module] = {edge for edge in visitor.edges if edge in MODULES and edge != module}
        offences += visitor.offences
    return graph, offences


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_scan_sees_every_package_and_its_imports() -> None:
    graph, _ = _scan()
    assert {"rskp_plugin.method.wrapper", "rskp_plugin.engine.trainer", "rskp_heads.wum"} <= graph.keys()
    assert "rskp_plugin.method.summarizer" in graph["rskp_plugin.method.wrapper"]
    assert "rskp_plugin.protocols" in graph["rskp_heads.wum"]


def test_no_import_cycle() -> None:
    graph, _ = _scan()
    assert _cycles(graph) == []


def test_heads_import_the_head_contract_not_the_post_processing() -> None:
    """A head declares its localisation rules as a ``LocalizationSettings`` from the head contract (``protocols``);
    the routine that applies them (``localization``) is no business of the head."""
    graph, _ = _scan()
    assert [m for m in graph if m.startswith("rskp_heads.") and "rskp_plugin.localization" in graph[m]] == []


def test_no_private_name_used_across_modules() -> None:
    _, offences = _scan()
    assert offences == []


#: Names with a leading underscore that are public API of the standard library (``NamedTuple``'s methods).
PUBLIC_UNDERSCORED = {"_replace", "_fields", "_asdict", "_make", "_field_defaults"}


def _private_definitions(tree: ast.AST) -> set[str]:
    """The private names a module defines: functions, classes, module variables, attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {name for name in names if _private(name)}


def _private_attribute_uses(trees: dict[str, ast.AST]) -> list[str]:
    """``obj._name`` where ``obj`` is not ``self``/``cls`` and ``_name`` is defined by another project module only:
    a private method or attribute of another module's object, reached through an attribute."""
    defined = {module: _private_definitions(tree) for module, tree in trees.items()}
    offences = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)) or node.attr in PUBLIC_UNDERSCORED:
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls") or node.attr in defined[module]:
                continue
            owners = sorted(other for other, names in defined.items() if node.attr in names)
            if owners:
                offences.append(f"{module}:{node.lineno}: uses {node.attr} of {', '.join(owners)}")
    return offences


def test_no_private_attribute_of_another_modules_object() -> None:
    trees = {module: ast.parse(path.read_text(encoding="utf-8")) for module, (path, _) in MODULES.items()}
    assert _private_attribute_uses(trees) == []
    caught = _private_attribute_uses({"a": ast.parse("class W:\n    def _embed(self): pass\n"),
                                      "b": ast.parse("def f(w):\n    return w._embed(), w._replace()\n")})
    assert caught == ["b:2: uses _embed of a"]


def test_the_checks_catch_what_they_are_for() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    visitor = _Imports("rskp_plugin.method.wrapper")
    visitor.visit(ast.parse(
        "from .summarizer import _EMAttention\nfrom . import memory\nmemory._positive_classes\n"
        "import rskp_plugin.method.propagation as p\np._blocks\nfrom ..evaluation._io import GroundTruth\n"
    ))
    assert [o.split(": ", 1)[1] for o in visitor.offences] == [
        "imports the private name _EMAttention from rskp_plugin.method.summarizer",
        "uses the private name _positive_classes of rskp_plugin.method.memory",
        "uses the private name _blocks of rskp_plugin.method.propagation",
        "imports the private module rskp_plugin.evaluation._io",
    ]


def test_the_command_line_parser_does_not_import_torch() -> None:
    """``rskp --help`` builds every subcommand's parser without torch (the handlers import what they run)."""
    import subprocess
    import sys

    code = ("import sys; from rskp_plugin import cli; cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
