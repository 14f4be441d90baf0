"""Shared fixtures: a named cast (owner, member, outsider), agents and clients; the objects
they arrange come from tests/factories.py.

The network is blocked to anything but loopback: a test that would call an outside service
fails instead of quietly depending on the internet.
"""

from __future__ import annotations

import gzip
import json
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

UTC = UTC  # datetime.UTC is 3.11+; the agent's tests also run on Python 3.9
AGENT_TESTS = Path(__file__).parent / "agent"

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (
        host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")
    ):
        raise RuntimeError(f"tests may not reach the network: {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


@pytest.fixture(autouse=True)
def _eager_celery(request: pytest.FixtureRequest) -> Any:
    """Unit and API tests run tasks in-process; e2e tests use a real worker instead."""
    if AGENT_TESTS in request.node.path.parents:
        yield  # the agent's tests never load Django
        return
    from ecoreport.celery import app

    eager = request.node.get_closest_marker("e2e") is None
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = eager
    yield
    app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _clear_cache(request: pytest.FixtureRequest) -> Any:
    if AGENT_TESTS in request.node.path.parents:
        yield
        return
    from django.core.cache import cache

    cache.clear()
    yield


@dataclass
class Cast:
    org: Any
    other_org: Any
    owner: Any
    member: Any
    outsider: Any
    owner_token: str
    member_token: str
    outsider_token: str


@pytest.fixture
def cast(db: Any) -> Cast:
    from ecoreport.organizations.services import api_token_issue
    from tests.factories import MembershipFactory, OrganizationFactory

    org = OrganizationFactory(slug="acme", name="Acme AI")
    other = OrganizationFactory(slug="globex", name="Globex")
    owner = MembershipFactory(organization=org, username="olivia", role="owner")
    member = MembershipFactory(organization=org, username="mo", role="member")
    outsider = MembershipFactory(organization=other, username="oscar", role="owner")
    return Cast(
        org=org,
        other_org=other,
        owner=owner,
        member=member,
        outsider=outsider,
        owner_token=api_token_issue(membership=owner),
        member_token=api_token_issue(membership=member),
        outsider_token=api_token_issue(membership=outsider),
    )


@dataclass
class Agent:
    host: Any
    token: str


@pytest.fixture
def make_agent(db: Any) -> Callable[..., Agent]:
    from ecoreport.fleet.services import agent_token_issue
    from tests.factories import HostFactory

    def make(org: Any, hostname: str = "gpu-node-01", **kwargs: Any) -> Agent:
        host = HostFactory(organization=org, hostname=hostname, **kwargs)
        return Agent(host=host, token=agent_token_issue(host=host))

    return make


@pytest.fixture
def agent(cast: Cast, make_agent: Callable[..., Agent]) -> Agent:
    return make_agent(cast.org)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


BASE_TIME = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def make_sample(
    *,
    gpu: str = "GPU-0",
    start: datetime = BASE_TIME,
    seconds: float = 10.0,
    energy_j: float = 3000.0,
    attribution: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    sample = {
        "gpu_uuid": gpu,
        "start": iso(start),
        "end": iso(start + timedelta(seconds=seconds)),
        "energy_j": energy_j,
        "method": "counter",
        "gpu_util_pct": 80.0,
        "mem_util_pct": 40.0,
        "mem_used_mib": 30000,
        "power_max_w": 400.0,
        "temperature_c": 60,
        "attribution": attribution if attribution is not None else [],
    }
    sample.update(extra)
    return sample


def make_batch(
    samples: list[dict[str, Any]],
    *,
    gpus: list[str] | None = None,
    batch_id: str | None = None,
    power_limit_w: float = 700.0,
) -> dict[str, Any]:
    uuids = gpus if gpus is not None else sorted({s["gpu_uuid"] for s in samples})
    return {
        "batch_id": batch_id or str(uuid.uuid4()),
        "agent": {"hostname": "gpu-node-01", "version": "0.1.0"},
        "gpus": [
            {
                "uuid": u,
                "index": i,
                "name": "NVIDIA H100 80GB HBM3",
                "memory_total_mib": 81559,
                "power_limit_w": power_limit_w,
            }
            for i, u in enumerate(uuids)
        ],
        "samples": samples,
    }


@pytest.fixture
def post_batch(client: Any, django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """POSTs to the ingest API and runs what the request scheduled on commit (the rollup)."""

    def post(token: str, body: Any, *, compress: bool = False, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else json.dumps(body).encode()
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        if compress:
            data = gzip.compress(data)
            headers["HTTP_CONTENT_ENCODING"] = "gzip"
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                "/api/v1/ingest", data=data, content_type="application/json", **headers
            )

    return post


@pytest.fixture
def get_usage(client: Any) -> Callable[..., Any]:
    def get(token: str, **params: Any) -> Any:
        return client.get("/api/v1/usage", params, HTTP_AUTHORIZATION=f"Bearer {token}")

    return get


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
