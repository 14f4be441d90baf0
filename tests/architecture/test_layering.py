"""The import graph of ``ecoreport`` has no cycles, and tasks are imported by nobody's services.

Every import counts, including those inside functions: an import moved into a function body to
dodge a cycle is still a cycle in the design. The graph is read from the source with ``ast``, so
the test needs no Django set-up and names the modules of any cycle it finds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ecoreport"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for path in PACKAGE.rglob("*.py")
        if "migrations" not in path.parts and "management" not in path.parts
    }


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The known module an imported dotted name refers to (``a.b.c`` may be ``a.b`` + name c)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                found = _resolve(target, known)
                if found and found != name and not name.startswith(found + "."):
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions(tmp_path):
    graph = import_graph()
    # ecoreport.celery imports the schedule inside a signal handler.
    assert "ecoreport.schedules" in graph["ecoreport.celery"]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert found == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("kind", ["services", "selectors", "models"])
def test_domain_modules_do_not_import_tasks(kind):
    """Tasks import services; services enqueue by name through ``ecoreport.core.enqueue``."""
    graph = import_graph()
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.rsplit(".", 1)[-1] == kind or f".{kind}." in module
        for target in targets
        if target.rsplit(".", 1)[-1] == "tasks"
    )
    assert offenders == []


def test_core_imports_no_domain_app():
    """``core`` is the ground floor: every app may import it, it imports none of them."""
    graph = import_graph()
    apps = {p.name for p in PACKAGE.iterdir() if (p / "apps.py").exists()} - {"core"}
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.startswith("ecoreport.core")
        for target in targets
        if target.split(".")[1] in apps
    )
    assert offenders == []


def app_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between the Django apps (``ecoreport.<app>``); project modules are left out."""
    apps = {p.name for p in PACKAGE.iterdir() if (p / "apps.py").exists()}
    result: dict[str, set[str]] = {app: set() for app in apps}
    for module, targets in graph.items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in apps:
            continue
        for target in targets:
            other = target.split(".")[1] if target.count(".") else ""
            if other in apps and other != parts[1]:
                result[parts[1]].add(other)
    return result


def test_apps_form_layers():
    """No two apps import each other, however indirectly: the apps can be stacked in layers."""
    found = cycles(app_graph(import_graph()))
    assert found == [], "apps importing each other:\n" + "\n".join(" <-> ".join(c) for c in found)
