"""Issue 14 item 7: demo seeding lives in ecoreport/demo alone, so core/ imports no domain app
and no domain app carries demo-only code."""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings
from django.core.management import get_commands

ECOREPORT = Path(__file__).resolve().parents[2] / "ecoreport"


def _modules(app: str) -> list[Path]:
    return [p for p in (ECOREPORT / app).rglob("*.py") if "migrations" not in p.parts]


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_core_imports_no_other_ecoreport_app():
    apps = {a.split(".")[1] for a in settings.INSTALLED_APPS if a.startswith("ecoreport.")}
    assert {"core", "demo", "carbon", "policies"} <= apps
    offending = {
        (str(path.relative_to(ECOREPORT)), name)
        for path in _modules("core")
        for name in _imported(path)
        if name.split(".")[0] == "ecoreport"
        and len(name.split(".")) > 1
        and name.split(".")[1] in apps - {"core"}
    }
    assert offending == set()


def test_demo_seeding_functions_live_only_in_the_demo_app():
    outside = {
        (str(path.relative_to(ECOREPORT)), node.name)
        for app in (p.name for p in ECOREPORT.iterdir() if p.is_dir() and p.name != "demo")
        for path in _modules(app)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and "demo" in node.name.lower()
    }
    assert outside == set()
    inside = {
        node.name
        for path in _modules("demo")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef)
    }
    assert {
        "demo_seed",
        "demo_carbon_seed",
        "targets_demo_create",
        "site_prices_demo_set",
    } <= inside


def test_seed_demo_is_the_demo_apps_command():
    assert get_commands()["seed_demo"] == "ecoreport.demo"
