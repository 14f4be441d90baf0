"""Writes for CodeCarbon trackers: tokens, runs, and the energy deltas they post.

A run is a job of its token's team and project; each ``/emissions`` body is a delta that is
split by hour (``booking``) and by component into ``EnergyPart`` rows, and the hours are marked
for the rollup, which books them into the same tables as the agent's energy (with source
``codecarbon``). Emissions come from the site's PUE and EcoReport's factors there, never from
the tracker's ``emissions_sum``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ecoreport.carbon.emissions import kwh_to_j
from ecoreport.codecarbon.booking import hour_slices, split_energy
from ecoreport.codecarbon.models import CodeCarbonToken, Emission, EnergyPart, Experiment, Run
from ecoreport.core.errors import DomainError
from ecoreport.fleet.models import Site
from ecoreport.organizations.models import Project, Team, hash_token, new_token
from ecoreport.telemetry.services import hours_mark_dirty, rollup_soon
from ecoreport.telemetry.validation import FUTURE_TOLERANCE

log = logging.getLogger(__name__)

TOKEN_PREFIX = "ecc"
# CodeCarbon posts a delta every ``api_call_interval`` measurements, or once at the end of the
# run when that is -1: a month-long run posted at its end is still booked, hour by hour.
MAX_DELTA = timedelta(days=31)
# The tracker's component fields (kWh) and the component each is booked as.
COMPONENT_FIELDS = {"gpu": "gpu_energy", "cpu": "cpu_energy", "ram": "ram_energy"}


class CodeCarbonError(DomainError):
    """A body the tracker sent that cannot be booked; answered 422 like CodeCarbon's server."""

    code = "invalid"
    status_code = 422


class UnknownRun(DomainError):
    code = "not_found"
    status_code = 404


class EmissionConflict(DomainError):
    code = "conflict"
    status_code = 409


class TokenInputError(DomainError):
    """A token request a person can fix (another organization's team, project or site)."""


def token_issue(
    *, team: Team, project: Project, site: Site, exclude_gpu: bool = False
) -> tuple[CodeCarbonToken, str]:
    """A new token for trackers of ``team``'s ``project`` at ``site``, and its raw value, which
    is shown once: only its hash is stored."""
    org_id = team.organization_id
    if project.organization_id != org_id or site.organization_id != org_id:
        raise TokenInputError("The team, project and site must belong to one organization.")
    raw = new_token(TOKEN_PREFIX)
    token = CodeCarbonToken.objects.create(
        organization_id=org_id,
        team=team,
        project=project,
        site=site,
        exclude_gpu=exclude_gpu,
        key_hash=hash_token(raw),
        key_prefix=raw[:10],
    )
    log.info(
        "codecarbon.token_issued org=%s team=%s project=%s site=%s exclude_gpu=%s prefix=%s",
        org_id,
        team.slug,
        project.slug,
        site.slug,
        exclude_gpu,
        token.key_prefix,
    )
    return token, raw


def token_revoke(*, token: CodeCarbonToken) -> None:
    CodeCarbonToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


@transaction.atomic
def run_create(
    *, token: CodeCarbonToken, experiment_id: uuid.UUID, started_at: datetime, client: dict
) -> Run:
    """A new run (job) of the token's team and project; its experiment is registered on first
    sight under the token's project."""
    experiment, _ = Experiment.objects.get_or_create(
        organization_id=token.organization_id,
        experiment_id=experiment_id,
        defaults={"project_id": token.project_id},
    )
    run_id = uuid.uuid4()
    run = Run.objects.create(
        organization_id=token.organization_id,
        run_id=run_id,
        job_id=str(run_id),
        experiment=experiment,
        token=token,
        team_id=token.team_id,
        project_id=token.project_id,
        site_id=token.site_id,
        exclude_gpu=token.exclude_gpu,
        started_at=started_at,
        client=client,
    )
    log.info(
        "codecarbon.run org=%s run=%s experiment=%s",
        token.organization_id,
        run_id,
        experiment_id,
    )
    return run


@dataclass(frozen=True)
class EmissionIn:
    run_id: uuid.UUID
    end: datetime
    duration_s: float
    cpu_energy_kwh: float
    gpu_energy_kwh: float
    ram_energy_kwh: float
    energy_consumed_kwh: float | None = None
    emissions_sum_kg: float | None = None


def body_digest(body: Any) -> str:
    """The same digest for the same JSON whatever its key order or spacing."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def emission_ingest(
    *, token: CodeCarbonToken, delta: EmissionIn, digest: str, now: datetime | None = None
) -> tuple[Emission, bool]:
    """Store and book one delta of one of the token's runs; ``(emission, created)``.

    A replay of the same body (same run and timestamp, same digest) books nothing and returns
    the stored one; a different body at the same run and timestamp is a conflict.
    """
    now = now or timezone.now()
    run = Run.objects.filter(
        organization_id=token.organization_id, token=token, run_id=delta.run_id
    ).first()
    if run is None:
        raise UnknownRun("No such run for this token: POST /runs first.", field="run_id")
    start = delta.end - timedelta(seconds=delta.duration_s)
    if delta.end > now + FUTURE_TOLERANCE:
        raise CodeCarbonError("must not be more than 5 minutes in the future", field="timestamp")
    if start < now - timedelta(days=settings.INGEST_MAX_SAMPLE_AGE_DAYS):
        raise CodeCarbonError(
            f"is older than {settings.INGEST_MAX_SAMPLE_AGE_DAYS} days", field="timestamp"
        )
    try:
        with transaction.atomic():
            emission = Emission.objects.create(
                organization_id=token.organization_id,
                run=run,
                start=start,
                end=delta.end,
                duration_s=delta.duration_s,
                cpu_energy_kwh=delta.cpu_energy_kwh,
                gpu_energy_kwh=delta.gpu_energy_kwh,
                ram_energy_kwh=delta.ram_energy_kwh,
                energy_consumed_kwh=delta.energy_consumed_kwh,
                emissions_sum_kg=delta.emissions_sum_kg,
                gpu_excluded=run.exclude_gpu,
                body_sha256=digest,
                received_at=now,
            )
            hours = _book(emission=emission, run=run)
            hours_mark_dirty(org=token.organization, hours=hours, now=now)
            transaction.on_commit(rollup_soon, robust=True)
    except IntegrityError:
        stored = Emission.objects.filter(run=run, end=delta.end).first()
        if stored is None:
            raise
        if stored.body_sha256 != digest:
            raise EmissionConflict(
                "This run already has a different delta ending at this timestamp.",
                field="timestamp",
            ) from None
        return stored, False
    return emission, True


def _book(*, emission: Emission, run: Run) -> set[datetime]:
    """Split the emission's components by hour into EnergyPart rows; the hours touched."""
    slices = hour_slices(emission.start, emission.end)
    parts = []
    for component, field in COMPONENT_FIELDS.items():
        if component == "gpu" and run.exclude_gpu:
            continue
        energy_j = kwh_to_j(getattr(emission, f"{field}_kwh"))
        if energy_j <= 0.0:
            continue
        for index, (piece, energy) in enumerate(
            zip(slices, split_energy(energy_j, slices), strict=True)
        ):
            parts.append(
                EnergyPart(
                    organization_id=emission.organization_id,
                    emission=emission,
                    run=run,
                    hour=piece.hour,
                    component=component,
                    energy_j=energy,
                    seconds=piece.seconds,
                    sample_count=1 if index == 0 else 0,
                )
            )
    EnergyPart.objects.bulk_create(parts)
    return {p.hour for p in parts}
