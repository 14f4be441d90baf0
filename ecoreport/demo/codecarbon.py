"""The demo's CodeCarbon trackers: two training scripts that report with CodeCarbon instead of
(or beside) the agent, so the pages show IT energy by component and by source.

Written through the same services as ``/api/codecarbon/runs`` and ``/emissions``, before the
demo's rollup, which books them with the agents' samples.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

from ecoreport.codecarbon.services import EmissionIn, body_digest, emission_ingest, run_create
from ecoreport.codecarbon.services import token_issue as codecarbon_token_issue
from ecoreport.fleet.models import Site
from ecoreport.organizations.models import Organization, Project

# (project, site, exclude_gpu, hours before now it started, hours it ran, GPU W, CPU W, RAM W):
# a fine-tuning script on a workstation no agent measures, and one on a host whose GPUs the
# agent measures (its GPU energy is left out, so it is not counted twice).
DEMO_RUNS = [
    ("rl-agents", "paris-dc", False, 30, 20, 280.0, 95.0, 24.0),
    ("llm-finetune", "warsaw-dc", True, 14, 10, 650.0, 140.0, 48.0),
]
# A delta every 15 minutes (api_call_interval=60 at 15 s a measurement): a few hundred rows.
DELTA_S = 900
_KWH_PER_WS = 1 / 3_600_000


def codecarbon_demo_create(*, organization: Organization, now: datetime, seed: int) -> int:
    """Tokens, runs and their deltas; returns the number of deltas booked."""
    rng = random.Random(seed)
    booked = 0
    for project_slug, site_slug, exclude_gpu, ago_h, hours, gpu_w, cpu_w, ram_w in DEMO_RUNS:
        project = (
            Project.objects.for_org(organization).select_related("team").get(slug=project_slug)
        )
        site = Site.objects.for_org(organization).get(slug=site_slug)
        assert project.team is not None
        token, _ = codecarbon_token_issue(
            team=project.team, project=project, site=site, exclude_gpu=exclude_gpu
        )
        started = now - timedelta(hours=ago_h)
        run = run_create(
            token=token,
            experiment_id=uuid.UUID(int=rng.getrandbits(128)),
            started_at=started,
            client={"codecarbon_version": "3.3.2", "tracking_mode": "machine", "demo": True},
        )
        for i in range(1, hours * 3600 // DELTA_S + 1):
            load = 0.75 + 0.25 * rng.random()
            delta = EmissionIn(
                run_id=run.run_id,
                end=started + timedelta(seconds=i * DELTA_S),
                duration_s=DELTA_S,
                cpu_energy_kwh=cpu_w * load * DELTA_S * _KWH_PER_WS,
                gpu_energy_kwh=gpu_w * load * DELTA_S * _KWH_PER_WS,
                ram_energy_kwh=ram_w * DELTA_S * _KWH_PER_WS,
            )
            body = {"run_id": str(delta.run_id), "timestamp": delta.end.isoformat(), "n": i}
            emission_ingest(token=token, delta=delta, digest=body_digest(body), now=now)
            booked += 1
    return booked
