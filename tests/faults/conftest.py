"""Fault tests: real web and worker processes (tests/e2e/conftest.py) under broken services."""

from __future__ import annotations

from tests.e2e.conftest import Processes, processes  # noqa: F401 - the fixture, re-exported

__all__ = ["Processes"]
