"""Tasks import services, never the other way (issue 14.5): no policies module but ``tasks``
imports a ``tasks`` module; services enqueue by task name (core.enqueue)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ecoreport.policies

POLICIES = Path(ecoreport.policies.__file__).parent
MODULES = sorted(p for p in POLICIES.glob("*.py") if p.name != "tasks.py")


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_policies_module_imports_a_tasks_module(path):
    assert [n for n in _imported(path) if n.split(".")[-1] == "tasks"] == []


def test_the_check_sees_the_tasks_module_import_services():
    # The tasks module itself does import services: the walk above would notice an import.
    assert "ecoreport.policies.services" in _imported(POLICIES / "tasks.py")
