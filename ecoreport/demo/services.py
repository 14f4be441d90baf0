"""The demo organization: teams, projects, sites in zones of different carbon intensity, hosts,
GPUs and months of history, written in bulk through the same ingest service the API uses (so
the demo obeys every invariant the product does), then rolled up. Its electricity prices,
policy targets and grid factors come from the sibling modules of this app.

Deterministic for a given seed and "now", so screenshots and tests are repeatable.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from ecoreport.accounting.services import dirty_hours_rollup
from ecoreport.demo.codecarbon import codecarbon_demo_create
from ecoreport.demo.policies import targets_demo_create
from ecoreport.demo.savings import site_prices_demo_set
from ecoreport.fleet.models import AgentCredential, Host, Site
from ecoreport.fleet.services import host_ensure
from ecoreport.organizations.models import Membership, Organization, Project, Role, Team
from ecoreport.organizations.services import api_token_issue, membership_ensure
from ecoreport.reports.models import ReportSubscription
from ecoreport.telemetry.schema import AgentIn, AttributionIn, BatchIn, GpuIn, SampleIn
from ecoreport.telemetry.services import samples_ingest

DEMO_SLUG = "demo"
HISTORY_STEP_S = 1800  # half-hour intervals keep months of history to ~100k rows per 16 GPUs

TEAMS = {
    "nlp": ("Language models", ["llm-pretrain", "llm-finetune"]),
    "vision": ("Computer vision", ["detr", "diffusion"]),
    "research": ("Research", ["rl-agents"]),
    "platform": ("ML platform", ["shared-inference"]),
}
# (slug, name, grid zone, PUE, provider): one clean, one average, one coal-heavy grid.
SITES = [
    ("paris-dc", "Paris colocation", "FR", "1.25", "colo"),
    ("iowa-gcp", "GCP us-central1", "GCP-us-central1", "1.10", "gcp"),
    ("warsaw-dc", "Warsaw on-premises", "PL", "1.58", "on-prem"),
]
# (model name, power limit W, idle W, memory MiB)
GPU_MODELS = [
    ("NVIDIA H100 80GB HBM3", 700.0, 70.0, 81559),
    ("NVIDIA A100-SXM4-40GB", 400.0, 55.0, 40960),
    ("NVIDIA L4", 72.0, 16.0, 23034),
]


@dataclass
class DemoSummary:
    organization: Organization
    samples: int
    hours: int
    login_created: bool
    # An API token of the viewer "prometheus" for scraping /metrics; development only, like
    # the login (None when DEBUG is off).
    metrics_token: str | None = None


def _jobs_for(rng: random.Random) -> list[tuple[str, str, str]]:
    return [
        (team, project, user)
        for team, (_, projects) in TEAMS.items()
        for project in projects
        for user in (f"{team}-{rng.choice(['alice', 'bob', 'chen', 'dana'])}",)
    ]


def _history(
    *, gpus: list[tuple[str, str, float, float]], start: datetime, end: datetime, seed: int
) -> Iterator[tuple[str, SampleIn]]:
    """(gpu uuid, sample) for every GPU and 15-minute interval, in time order.

    Each GPU runs jobs of a few hours to a few days, busier in working hours and on weekdays,
    with idle gaps between them; a job's utilization wanders around its own mean.
    """
    rng = random.Random(seed)
    jobs = _jobs_for(rng)
    state: dict[str, dict] = {}
    next_job = 481_000  # Slurm-like ids, in submission order
    moment = start
    step = timedelta(seconds=HISTORY_STEP_S)
    while moment < end:
        local_hour = moment.hour + moment.minute / 60
        diurnal = 0.55 + 0.45 * math.sin((local_hour - 9) / 24 * 2 * math.pi)
        weekday = 1.0 if moment.weekday() < 5 else 0.6
        for gpu_uuid, _, limit_w, idle_w in gpus:
            s = state.setdefault(gpu_uuid, {"job": None, "left": 0, "util": 0.0})
            if s["left"] <= 0:
                if s["job"] is None and rng.random() < 0.55 * diurnal * weekday:
                    s["job"] = rng.choice(jobs)
                    next_job += rng.randint(1, 30)
                    s["job_id"] = f"slurm-{next_job}"
                    s["left"] = rng.randint(4, 2 * 48 * 3)
                    s["util"] = rng.uniform(35, 97)
                else:
                    s["job"] = None
                    s["left"] = rng.randint(1, 12)
            s["left"] -= 1
            if s["job"] is None:
                util = 0.0
                power_w = idle_w * rng.uniform(0.95, 1.05)
                attribution: list[AttributionIn] = []
            else:
                util = min(100.0, max(1.0, rng.gauss(s["util"], 6)))
                power_w = idle_w + (limit_w * 0.92 - idle_w) * util / 100
                team, project, user = s["job"]
                attribution = [
                    AttributionIn(
                        share=1.0,
                        team=team,
                        project=project,
                        user=user,
                        job_id=s["job_id"],
                    )
                ]
            yield (
                gpu_uuid,
                SampleIn(
                    gpu_uuid=gpu_uuid,
                    start=moment,
                    end=moment + step,
                    energy_j=round(power_w * HISTORY_STEP_S, 3),
                    method="counter",
                    gpu_util_pct=round(util, 1),
                    mem_util_pct=round(util * 0.45, 1),
                    mem_used_mib=0.0 if s["job"] is None else 30000.0,
                    power_max_w=round(min(limit_w, power_w * 1.15), 1),
                    temperature_c=round(35 + 0.4 * util, 1),
                    attribution=attribution,
                    # One job per GPU at a time: nothing to divide (the agent says "single").
                    split="single" if attribution else None,
                ),
            )
        moment += step


def demo_seed(
    *,
    days: int,
    gpus: int,
    now: datetime | None = None,
    seed: int = 42,
    progress: Callable[[str], None] = lambda _: None,
    before_rollup: Callable[[Organization], object] | None = None,
) -> DemoSummary:
    """The demo organization with ``days`` of history for ``gpus`` GPUs, rolled up.

    ``before_rollup`` runs once the sites, hosts and samples exist and before the rollup (the
    carbon app's demo factors go there, so the rollup applies them instead of a recompute
    rewriting every row afterwards)."""
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=days)
    with transaction.atomic():
        previous = Organization.objects.filter(slug=DEMO_SLUG).first()
        if previous is not None:
            progress("Removing the previous demo organization…")
            organization_purge(organization=previous)
        org = Organization.objects.create(slug=DEMO_SLUG, name="Demo AI Lab")
        teams = {}
        for slug, (name, projects) in TEAMS.items():
            teams[slug] = Team.objects.create(organization=org, slug=slug, name=name)
            for project in projects:
                Project.objects.create(
                    organization=org, slug=project, name=project, team=teams[slug]
                )
        sites = [
            Site.objects.create(
                organization=org, slug=slug, name=name, grid_zone=zone, pue=pue, provider=provider
            )
            for slug, name, zone, pue, provider in SITES
        ]
        site_prices_demo_set(sites=sites)  # electricity prices for the savings calculator
        hosts: list[tuple[Host, list[tuple[str, str, float, float]]]] = []
        rng = random.Random(seed)
        for h in range(math.ceil(gpus / 4)):
            site = sites[h % len(sites)]
            model = GPU_MODELS[h % len(GPU_MODELS)]
            host = host_ensure(
                organization=org,
                hostname=f"{site.slug.split('-')[0]}-gpu-{h + 1:02d}",
                site=site,
                default_team=teams["platform"] if h % 4 == 3 else None,
            )
            host_gpus = [
                (f"GPU-{uuid.UUID(int=rng.getrandbits(128))}", model[0], model[1], model[2])
                for _ in range(min(4, gpus - 4 * h))
            ]
            hosts.append((host, host_gpus))
        login_created = _demo_login(org)
        metrics_token = _demo_scraper_token(org)
    progress(
        f"Created organization '{DEMO_SLUG}' with {len(teams)} teams, {len(sites)} sites, "
        f"{len(hosts)} hosts and {gpus} GPUs."
    )

    total = 0
    intervals = days * 86400 // HISTORY_STEP_S
    for n, (host, host_gpus) in enumerate(hosts, start=1):
        credential = AgentCredential(organization=org, host=host)
        inventory = [
            GpuIn(
                uuid=u,
                index=i,
                name=name,
                memory_total_mib=GPU_MODELS[[m[0] for m in GPU_MODELS].index(name)][3],
                power_limit_w=limit,
            )
            for i, (u, name, limit, _) in enumerate(host_gpus)
        ]
        batch: list[SampleIn] = []
        for _, sample in _history(gpus=host_gpus, start=start, end=now, seed=seed + n):
            batch.append(sample)
            if len(batch) >= 5000:
                total += _ingest(credential, host, inventory, batch, now)
                batch = []
        if batch:
            total += _ingest(credential, host, inventory, batch, now)
        progress(
            f"  history {n}/{len(hosts)} hosts: {total:,} samples "
            f"({intervals:,} intervals of {HISTORY_STEP_S // 60} min per GPU)"
        )
    deltas = codecarbon_demo_create(organization=org, now=now, seed=seed)
    progress(f"  {deltas:,} CodeCarbon deltas (CPU, RAM and GPU energy of two training scripts)")
    if before_rollup is not None:
        before_rollup(org)
    hours = 0
    while rebuilt := dirty_hours_rollup(limit=500):
        hours += rebuilt
        progress(f"  rolled up {hours:,} hours")
    targets = targets_demo_create(organization=org, now=now)
    progress(f"  {len(targets)} policy targets: {', '.join(t.status for t in targets)}")
    return DemoSummary(
        organization=org,
        samples=total,
        hours=hours,
        login_created=login_created,
        metrics_token=metrics_token,
    )


def organization_purge(*, organization: Organization) -> None:
    """Delete an organization and everything it owns.

    The raw tables are emptied with one DELETE each: Django's cascade would load every sample
    into memory first. Hosts go before sites, which protect the hosts placed at them.
    """
    from ecoreport.accounting.models import HourlyJobUsage, HourlySummary, HourlyUsage
    from ecoreport.telemetry.models import DirtyHour, EnergySample, IngestBatch, SampleShare

    with connection.cursor() as cursor:
        for model in (
            SampleShare,
            EnergySample,
            HourlyUsage,
            HourlyJobUsage,
            HourlySummary,
            DirtyHour,
            IngestBatch,
        ):
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE organization_id = %s",  # noqa: S608
                [organization.pk],
            )
    Host.objects.filter(organization=organization).delete()
    organization.delete()


def _ingest(
    credential: AgentCredential,
    host: Host,
    inventory: list[GpuIn],
    samples: list[SampleIn],
    now: datetime,
) -> int:
    batch = BatchIn(
        batch_id=uuid.uuid4(),
        agent=AgentIn(hostname=host.hostname, version="demo"),
        samples=samples,
        gpus=inventory,
    )
    # The generated history may reach further back than live agents are allowed to (--days).
    result = samples_ingest(
        credential=credential,
        batch=batch,
        now=now + timedelta(minutes=1),
        max_sample_age=timedelta(days=801),
    )
    if result.rejected:
        raise RuntimeError(f"demo history rejected: {result.rejected[:3]}")
    return result.accepted


def _demo_scraper_token(org: Organization) -> str | None:
    """A viewer "prometheus" and an API token for it, so that the demo's /metrics can be
    scraped (docs/integrations.md); never issued when DEBUG is off."""
    if not settings.DEBUG:
        return None
    membership = membership_ensure(organization=org, username="prometheus", role=Role.VIEWER)
    return api_token_issue(membership=membership)


def _demo_login(org: Organization) -> bool:
    """The development login demo/demo; never created when DEBUG is off."""
    if not settings.DEBUG:
        return False
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(
        username="demo", defaults={"email": "demo@example.com"}
    )
    user.set_password("demo")
    # An organization admin, as the people who use EcoReport are: not Django staff, whose admin
    # would greet it with "You don't have permission to view or edit anything".
    user.is_staff = False
    user.save()
    Membership.objects.update_or_create(organization=org, user=user, defaults={"role": Role.ADMIN})
    # Subscribed to the quarterly reports (printed by the console e-mail backend in the demo).
    ReportSubscription.objects.get_or_create(organization=org, user=user)
    return True
