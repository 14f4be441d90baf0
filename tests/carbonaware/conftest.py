"""A client for the SDK's routes with a bearer token; the live web server for test_live."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import processes  # noqa: F401 - the fixture, re-exported

SDK = "/api/carbon-aware"


def sdk_get(client: Any, path: str, token: str | None, params: Any = None) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(SDK + path, params or {}, **headers)
