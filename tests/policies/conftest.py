"""Fixtures for policy tests: rollup rows written directly (the rollup itself is tested in
tests/backend), a webhook receiver on loopback, and the cast's teams."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


def has_emissions() -> bool:
    from ecoreport.accounting.models import HourlyUsage

    return any(f.name == "co2e_g" for f in HourlyUsage._meta.get_fields())


@pytest.fixture
def usage(cast: Any) -> Callable[..., None]:
    """add(start, hours, kwh_per_hour=..., team=..., util_pct=..., idle_share=...): one GPU's
    rollup rows, one per hour."""
    from ecoreport.accounting.models import HourlyUsage
    from tests.factories import GpuFactory, HostFactory

    host = HostFactory(organization=cast.org, hostname="gpu-node-01")
    gpu = GpuFactory(host=host, uuid="GPU-0")

    def add(
        start: datetime,
        hours: int,
        *,
        kwh_per_hour: float = 0.5,
        team: Any = None,
        project: Any = None,
        util_pct: float = 80.0,
        idle_share: float = 0.1,
        org: Any = None,
        pue: float = 1.0,
        g_per_kwh: float = 0.0,
        market_g_per_kwh: float = 0.0,
    ) -> None:
        energy_j = kwh_per_hour * 3_600_000
        # Emission columns arrive with carbon accounting; rows without them still serve the
        # energy and utilization tests.
        emissions = (
            {
                "facility_energy_j": energy_j * pue,
                "co2e_g": kwh_per_hour * pue * g_per_kwh,
                "co2e_market_g": kwh_per_hour * pue * market_g_per_kwh,
            }
            if has_emissions()
            else {}
        )
        HourlyUsage.objects.bulk_create(
            [
                HourlyUsage(
                    organization=org or cast.org,
                    hour=start + timedelta(hours=h),
                    gpu=gpu,
                    host=host,
                    team=team,
                    project=project,
                    energy_j=energy_j,
                    agent_energy_j=energy_j,  # the agent's rows, as the rollup writes them
                    idle_energy_j=energy_j * idle_share,
                    gpu_seconds=3600,
                    util_seconds=3600,
                    util_x_seconds=util_pct * 3600,
                    util_energy_j=energy_j,
                    util_x_energy_j=util_pct * energy_j,
                    sample_count=360,
                    **emissions,
                )
                for h in range(hours)
            ]
        )

    return add


@pytest.fixture
def team(cast: Any) -> Any:
    from tests.factories import TeamFactory

    return TeamFactory(organization=cast.org, slug="nlp", name="Language models")


@dataclass
class Receiver:
    url: str
    secret: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    # HTTP statuses to answer, in order, each alone or with headers; 200 once they run out.
    plan: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    delay_s: float = 0.0

    def verified_bodies(self) -> list[dict[str, Any]]:
        """The bodies whose signature checks out with the secret, parsed."""
        good = []
        for r in self.requests:
            expected = (
                "sha256=" + hmac.new(self.secret.encode(), r["body"], hashlib.sha256).hexdigest()
            )
            if hmac.compare_digest(r["headers"].get("x-ecoreport-signature", ""), expected):
                good.append(json.loads(r["body"]))
        return good


@pytest.fixture
def receiver(settings: Any) -> Any:
    """A real HTTP server on 127.0.0.1 in a thread, recording every request. Webhooks may not
    reach loopback unless the operator allows it, so the tests that use it do."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    state = Receiver(url="", secret="receiver-secret-0123456789")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(
                {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
            )
            if state.delay_s:
                time.sleep(state.delay_s)
            answer = state.plan.pop(0) if state.plan else 200
            code, headers = answer if isinstance(answer, tuple) else (answer, {})
            try:
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, *args: Any) -> None:
            pass  # tests fail on stray console output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/ecoreport"
    yield state
    server.shutdown()
    server.server_close()
