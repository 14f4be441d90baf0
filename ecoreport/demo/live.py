"""The demo's live fleet: every seeded host keeps reporting after ``seed_demo``, from where its
history stops, so the fleet page, the live panel and the latest hours join the history without
a cliff. One process for all of them (``manage.py demo_live``); samples go through the same
ingest service as an agent's batches (no HTTP: the demo's stand-in for many agents).

Each GPU runs jobs of one to eight hours with idle gaps, as the history does; a restart picks up
at each GPU's last stored sample (a long stop is caught up in half-hour steps, then live steps).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ecoreport.demo.services import HISTORY_STEP_S, _ingest, _jobs_for
from ecoreport.fleet.models import AgentCredential, Gpu, Host
from ecoreport.organizations.models import Organization
from ecoreport.telemetry.models import EnergySample
from ecoreport.telemetry.schema import AttributionIn, GpuIn, SampleIn

IDLE_W = 0.1  # idle draw as a share of the power limit


@dataclass
class _GpuState:
    gpu: Gpu
    cursor: datetime
    job: tuple[str, str, str] | None = None
    job_id: str = ""
    util: float = 0.0
    left_s: float = 0.0
    rng: random.Random = field(default_factory=random.Random)


class LiveFleet:
    """The seeded hosts of the demo organization (those no real agent feeds: ``exclude``)."""

    def __init__(
        self,
        organization: Organization,
        *,
        step_s: float,
        now: datetime,
        seed: int = 7,
        exclude: Iterable[str] = (),
    ) -> None:
        self.organization = organization
        self.step = timedelta(seconds=step_s)
        self.jobs = _jobs_for(random.Random(seed))
        self.hosts = list(
            Host.objects.for_org(organization)
            .exclude(hostname__in=list(exclude))
            .prefetch_related("gpus")
            .order_by("hostname")
        )
        self.states: dict[int, _GpuState] = {}
        for n, host in enumerate(self.hosts):
            for gpu in host.gpus.all():
                last = (
                    EnergySample.objects.filter(gpu=gpu)
                    .order_by("-start")
                    .values_list("end", flat=True)
                    .first()
                )
                self.states[gpu.pk] = _GpuState(
                    gpu=gpu,
                    cursor=last or now - self.step,
                    rng=random.Random(seed * 1000 + n * 16 + gpu.index),
                )
        self.next_job = 900_000

    def _sample(self, s: _GpuState, start: datetime, end: datetime) -> SampleIn:
        seconds = (end - start).total_seconds()
        if s.left_s <= 0:
            if s.job is None and s.rng.random() < 0.6:
                s.job = s.rng.choice(self.jobs)
                self.next_job += s.rng.randint(1, 30)
                s.job_id = f"slurm-{self.next_job}"
                s.left_s = s.rng.uniform(1, 8) * 3600
                s.util = s.rng.uniform(35, 97)
            else:
                s.job = None
                s.left_s = s.rng.uniform(0.25, 2) * 3600
        s.left_s -= seconds
        limit = s.gpu.power_limit_w or 300.0
        idle_w = IDLE_W * limit
        attribution: list[AttributionIn] = []
        if s.job is None:
            util, power_w = 0.0, idle_w * s.rng.uniform(0.95, 1.05)
        else:
            util = min(100.0, max(1.0, s.rng.gauss(s.util, 6)))
            power_w = idle_w + (limit * 0.92 - idle_w) * util / 100
            team, project, user = s.job
            attribution = [
                AttributionIn(share=1.0, team=team, project=project, user=user, job_id=s.job_id)
            ]
        return SampleIn(
            gpu_uuid=s.gpu.uuid,
            start=start,
            end=end,
            energy_j=round(power_w * seconds, 3),
            method="counter",
            gpu_util_pct=round(util, 1),
            mem_util_pct=round(util * 0.45, 1),
            mem_used_mib=0.0 if s.job is None else 30000.0,
            power_max_w=round(min(limit, power_w * 1.15), 1),
            temperature_c=round(35 + 0.4 * util, 1),
            attribution=attribution,
            split="single" if attribution else None,
        )

    def tick(self, now: datetime) -> int:
        """Samples for every GPU from where it stopped up to ``now``; returns those accepted."""
        accepted = 0
        catch_up = timedelta(seconds=HISTORY_STEP_S)
        for host in self.hosts:
            gpus = list(host.gpus.all())
            samples: list[SampleIn] = []
            for gpu in gpus:
                s = self.states[gpu.pk]
                while s.cursor + self.step <= now:
                    # A long stop is caught up in half-hour steps: the live step for days would
                    # be hundreds of thousands of samples.
                    step = catch_up if now - s.cursor > 2 * catch_up else self.step
                    samples.append(self._sample(s, s.cursor, s.cursor + step))
                    s.cursor += step
            if not samples:
                continue
            inventory = [
                GpuIn(
                    uuid=g.uuid,
                    index=g.index,
                    name=g.name,
                    memory_total_mib=g.memory_total_mib,
                    power_limit_w=g.power_limit_w,
                )
                for g in gpus
            ]
            credential = AgentCredential(organization=self.organization, host=host)
            for i in range(0, len(samples), 5000):
                accepted += _ingest(credential, host, inventory, samples[i : i + 5000], now)
        return accepted
