"""Metrics tests: the live stack of tests/e2e/conftest.py for the real Prometheus server."""

from __future__ import annotations

from tests.e2e.conftest import Processes, live_stack, processes  # noqa: F401 - the fixtures

__all__ = ["Processes"]
