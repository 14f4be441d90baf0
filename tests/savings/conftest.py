"""A small fleet with known numbers: two sites, an hourly grid profile at one, an annual factor
at the other, a busy job, an idle GPU and a job that barely uses its GPU."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import BASE_TIME, make_batch, make_sample

KWH = 3_600_000.0
DAY = BASE_TIME.replace(hour=0)  # 2026-11-27 00:00 UTC
# Zone ZA, hour by hour from DAY 00:00 for 48 hours: dirty by day, cleanest at 03:00 and 27:00.
PROFILE_ZA = [
    300,
    250,
    200,
    120,
    150,
    220,
    280,
    350,
    400,
    420,
    450,
    480,
    500,
    470,
    440,
    410,
    390,
    380,
    360,
    340,
    330,
    320,
    310,
    305,
    290,
    240,
    190,
    110,
    140,
    210,
    270,
    340,
    390,
    410,
    440,
    470,
    490,
    460,
    430,
    400,
    380,
    370,
    350,
    330,
    320,
    310,
    300,
    295,
]
ZB_YEAR_G_PER_KWH = 50.0
PUE_A, PUE_B = 1.2, 1.5


def hour_sample(
    gpu: str, hour: int, kwh: float, attribution: list[dict] | None = None, **extra: Any
) -> dict:
    return make_sample(
        gpu=gpu,
        start=DAY + timedelta(hours=hour),
        seconds=3600,
        energy_j=kwh * KWH,
        attribution=attribution or [],
        **extra,
    )


@dataclass
class Fleet:
    site_a: Any
    site_b: Any
    node_a: Any
    node_b: Any
    nlp: Any


@pytest.fixture
def zone_factors(db: Any) -> None:
    from ecoreport.carbon.models import CarbonIntensity

    CarbonIntensity.objects.bulk_create(
        [
            CarbonIntensity(
                zone="ZA",
                resolution="hour",
                start=DAY + timedelta(hours=h),
                end=DAY + timedelta(hours=h + 1),
                intensity_g_per_kwh=value,
                basis="location",
                source="test grid operator",
                year=2026,
            )
            for h, value in enumerate(PROFILE_ZA)
        ]
        + [
            CarbonIntensity(
                zone="ZA",
                resolution="year",
                start=DAY.replace(month=1, day=1),
                end=DAY.replace(year=2027, month=1, day=1),
                intensity_g_per_kwh=333.0,
                source="test annual",
                year=2026,
            ),
            CarbonIntensity(
                zone="ZB",
                resolution="year",
                start=DAY.replace(month=1, day=1),
                end=DAY.replace(year=2027, month=1, day=1),
                intensity_g_per_kwh=ZB_YEAR_G_PER_KWH,
                source="test annual",
                year=2026,
            ),
        ]
    )


@pytest.fixture
def fleet(cast: Any, make_agent: Any, post_batch: Any, zone_factors: None) -> Fleet:
    """node-a (site A, PUE 1.2, zone ZA hourly) and node-b (site B, PUE 1.5, zone ZB annual).

    - GPU-A0: job j1 of project llm (team nlp), 1 kWh in each of hours 10, 11 and 12, 80 % util.
    - GPU-A1: idle (no process) in hours 10 and 11, 0.5 kWh each: charged to nlp, node-a's team.
    - GPU-B0: job j2 of project tiny-eval (team vision), 0.5 kWh in hour 10, 10 % util, 5 GB.
    """
    from ecoreport.carbon.sites import site_create
    from tests.factories import TeamFactory

    nlp = TeamFactory(organization=cast.org, slug="nlp")
    site_a = site_create(
        organization=cast.org, slug="dc-a", name="A", grid_zone="ZA", pue=str(PUE_A)
    )
    site_b = site_create(
        organization=cast.org, slug="dc-b", name="B", grid_zone="ZB", pue=str(PUE_B)
    )
    node_a = make_agent(cast.org, "node-a", site=site_a, default_team=nlp)
    node_b = make_agent(cast.org, "node-b", site=site_b)
    j1 = [{"share": 1.0, "team": "nlp", "project": "llm", "job_id": "j1", "user": "alice"}]
    j2 = [{"share": 1.0, "team": "vision", "project": "tiny-eval", "job_id": "j2", "user": "bob"}]
    samples_a = [
        hour_sample("GPU-A0", h, 1.0, j1, gpu_util_pct=80.0, mem_used_mib=60000)
        for h in (10, 11, 12)
    ]
    samples_a += [hour_sample("GPU-A1", h, 0.5, gpu_util_pct=0.0, mem_used_mib=0) for h in (10, 11)]
    for token, samples in (
        (node_a.token, samples_a),
        (node_b.token, [hour_sample("GPU-B0", 10, 0.5, j2, gpu_util_pct=10.0, mem_used_mib=5000)]),
    ):
        response = post_batch(token, make_batch(samples, power_limit_w=1500.0))
        assert response.status_code == 200 and response.json()["accepted"] == len(samples), (
            response.json()
        )
    return Fleet(site_a, site_b, node_a.host, node_b.host, nlp)
