"""The package's import graph has no cycle, and its layers import only downwards.

Every ``import`` and ``from ... import`` of every module counts, wherever it stands: at the top, inside a
function (a lazy import is still a dependency), or under ``if TYPE_CHECKING:``. Relative imports are
resolved. ``from robustlabels.x import name`` is an edge to ``robustlabels.x.name`` when that is a module,
else to ``robustlabels.x``; ``import robustlabels.x.y`` is an edge to ``robustlabels.x.y``.

Packages. A package's ``__init__`` re-exporting its submodules gives edges ``package -> submodule``. The
parent packages that Python imports implicitly on the way to a submodule are **not** edges: were they, every
``package/__init__`` that imports its own submodules would close a cycle with each of them. An explicit
import of one's own parent package (``from robustlabels.x import name`` inside ``robustlabels/x/``) is an
ordinary edge, so it is reported exactly when the package's ``__init__`` (directly or through others)
imports that submodule back: then the submodule runs against a half-initialised package, a real cycle.
Import the defining submodule instead (``robustlabels.x.base``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "robustlabels"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# The training library and the core modules it builds on: none may import a tool or a command line.
LOW_LAYERS = ("strategies", "regularizers", "nn", "data", "noise", "neighbors", "features", "module", "networks",
              "types", "registry", "errors", "schedules", "callbacks", "metrics", "memory", "distributed",
              "io", "output_set", "checks")  # fmt: skip
HIGH_LAYERS = ("audit", "experiments", "fit", "inject", "cli", "arguments")  # what uses it: tools and command lines
ENTRY_POINTS = ("fit", "inject")  # `python -m ...` only: nothing imports them


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def resolve(importer: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> Iterator[str]:
    """The package modules one import statement depends on."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                yield longest_known(alias.name, known)
        return
    base = node.module or ""
    if node.level:  # relative: from the importer's package, one level up per extra dot
        anchor = importer.split(".") if is_package else importer.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, *([base] if base else [])])
    if base != PACKAGE and not base.startswith(PACKAGE + "."):
        return
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        yield candidate if candidate in known else longest_known(base, known)


def longest_known(name: str, known: set[str]) -> str:
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """``importer -> {imported}`` over the package's modules (self-edges dropped)."""
    known = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name] |= set(resolve(name, path.name == "__init__.py", node, known)) - {name}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through ``component``'s first module, as ``[a, b, ..., a]`` (breadth-first: a shortest one)."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                return [*paths[node], start]
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    return component


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each import cycle as ``a -> b -> a`` (one per strongly connected component)."""
    return [" -> ".join(a_cycle(graph, component)) for component in strongly_connected(graph)]


def in_layer(module: str, layers: tuple[str, ...]) -> bool:
    return any(module == f"{PACKAGE}.{layer}" or module.startswith(f"{PACKAGE}.{layer}.") for layer in layers)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(package_modules())


def test_the_package_has_no_import_cycle(graph: dict[str, set[str]]) -> None:
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(found)


def test_the_training_library_does_not_import_tools_or_command_lines(graph: dict[str, set[str]]) -> None:
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if in_layer(m, LOW_LAYERS)
                    for t in targets if in_layer(t, HIGH_LAYERS))  # fmt: skip
    assert not upward, "the training library imports a tool or command line: " + "; ".join(upward)


def test_nothing_imports_an_entry_point(graph: dict[str, set[str]]) -> None:
    importers = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if in_layer(t, ENTRY_POINTS))
    assert not importers, "entry points are for `python -m` only: " + "; ".join(importers)


def test_the_checks_see_what_they_must(tmp_path: Path) -> None:
    """The graph builder and the cycle finder on a made-up package: each kind of import, each kind of cycle."""
    files = {
        "__init__.py": "",
        "a/__init__.py": "from robustlabels.a.base import Base\n",
        "a/base.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from robustlabels.b import user\n",
        "a/child.py": "from robustlabels.a import Base\n",  # its own package: fine, no cycle
        "b/__init__.py": "",
        "b/user.py": "def f():\n    from ..a import base\n",  # lazy and relative: still an edge
        "c.py": "import robustlabels.d\n",
        "d.py": "from robustlabels import c\n",
        "e/__init__.py": "from .inner import x\n",
        "e/inner.py": "from robustlabels.e import y\n",  # its own package, which imports it: a real cycle
    }
    for name, text in files.items():
        (tmp_path / PACKAGE / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / PACKAGE / name).write_text(text)
    modules = {".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
               for p in sorted((tmp_path / PACKAGE).rglob("*.py"))}  # fmt: skip
    made_up = import_graph(modules)
    assert made_up["robustlabels.a.child"] == {"robustlabels.a"}
    assert made_up["robustlabels.b.user"] == {"robustlabels.a.base"}
    assert made_up["robustlabels.d"] == {"robustlabels.c"}
    assert sorted(cycles(made_up)) == [
        "robustlabels.a.base -> robustlabels.b.user -> robustlabels.a.base",
        "robustlabels.c -> robustlabels.d -> robustlabels.c",
        "robustlabels.e -> robustlabels.e.inner -> robustlabels.e",
    ]


def test_the_training_module_stays_small() -> None:
    """``module.py`` composes; the methods live in strategies, metrics and regularizers (issue 12: < 250 lines; issue
    16 added its input checks as one-line calls into networks, checks and checkpoints: < 255)."""
    assert len((ROOT / "module.py").read_text().splitlines()) < 255
