"""Hourly factors loaded through the carbon app's import service, and a client for the SDK's
routes with a bearer token; the live web server for test_live."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from tests.conftest import iso
from tests.e2e.conftest import processes  # noqa: F401 - the fixture, re-exported

SDK = "/api/carbon-aware"


def load_hourly(
    zone: str,
    first: datetime,
    values: Sequence[float],
    *,
    basis: str = "location",
    organization: Any = None,
    source: str = "test grid operator",
) -> None:
    """``values`` as consecutive hourly factors of ``zone`` from ``first``."""
    from ecoreport.carbon.factors import factors_import

    result = factors_import(
        records=[
            (
                line,
                {
                    "zone": zone,
                    "start": iso(first + timedelta(hours=h)),
                    "end": iso(first + timedelta(hours=h + 1)),
                    "g_co2e_per_kwh": value,
                    "basis": basis,
                    "source": source,
                    "year": first.year,
                },
            )
            for line, (h, value) in enumerate(enumerate(values), start=2)
        ],
        organization=organization,
    )
    assert not result.errors, result.errors


def sdk_get(client: Any, path: str, token: str | None, params: Any = None) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(SDK + path, params or {}, **headers)
