"""Metrics tests: the live stack of tests/e2e/conftest.py, and Debian's Prometheus binaries.

A missing ``prometheus`` or ``promtool`` skips its test with a reason, except in CI (``CI=true``,
or ``ECOREPORT_REQUIRE_SERVICES`` as .ci/run sets it), where .ci/run installs the package and a
missing binary must fail the run instead of hiding it.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.e2e.conftest import Processes, live_stack, processes  # noqa: F401 - the fixtures

__all__ = ["Processes", "prometheus_binary"]


def prometheus_binary(name: str) -> str:
    """The path of ``name`` (prometheus, promtool), or skip (fail in CI) when absent."""
    path = shutil.which(name) or f"/usr/bin/{name}"
    if os.path.exists(path):
        return path
    required = os.environ.get("CI", "").lower() in ("true", "1") or bool(
        os.environ.get("ECOREPORT_REQUIRE_SERVICES")
    )
    if required:
        pytest.fail(f"{name} is required in CI (apt-get install prometheus)")
    pytest.skip(f"{name} is not installed (apt-get install prometheus)")
