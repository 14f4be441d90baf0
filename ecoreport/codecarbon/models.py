"""CodeCarbon trackers reporting into EcoReport: their tokens, experiments, runs and the energy
deltas they post (raw, and split by hour and component for the rollup)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from ecoreport.fleet.models import Site
from ecoreport.organizations.models import (
    HashedToken,
    Organization,
    OrgScopedQuerySet,
    Project,
    Team,
)


class CodeCarbonToken(HashedToken):
    """A hashed ``x-api-token`` for CodeCarbon trackers, bound to one team, project and site.

    The site gives the grid zone and PUE that EcoReport's own factors are applied with; the
    tracker's emissions figure is never used. ``exclude_gpu`` is for hosts whose GPUs an
    EcoReport agent already measures: their trackers' GPU energy is not booked, so that it is
    not counted twice.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="codecarbon_tokens"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    # RESTRICT: a site or token with trackers' history is not deleted from under it (revoke the
    # token instead); deleting the organization takes all of it.
    site = models.ForeignKey(Site, on_delete=models.RESTRICT, related_name="+")
    exclude_gpu = models.BooleanField(default=False)

    objects = OrgScopedQuerySet.as_manager()

    class Meta(HashedToken.Meta):
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.key_prefix}… for {self.team}/{self.project}"


class Experiment(models.Model):
    """A CodeCarbon experiment id, registered on first sight under the project of the token
    that first named it (CodeCarbon's own server wants it created beforehand)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    experiment_id = models.UUIDField()
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "experiment_id"], name="codecarbon_experiment_unique"
            )
        ]


class Run(models.Model):
    """One tracker's run: a job (``job_id`` is the run id) of its token's team and project.

    Team, project, site and ``exclude_gpu`` are copied from the token when the run starts, so
    that a run keeps being booked as it began.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    run_id = models.UUIDField(unique=True)
    job_id = models.CharField(max_length=128)
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="runs")
    token = models.ForeignKey(CodeCarbonToken, on_delete=models.RESTRICT, related_name="runs")
    team = models.ForeignKey(Team, null=True, on_delete=models.SET_NULL, related_name="+")
    project = models.ForeignKey(Project, null=True, on_delete=models.SET_NULL, related_name="+")
    site = models.ForeignKey(Site, null=True, on_delete=models.SET_NULL, related_name="+")
    exclude_gpu = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    # What the tracker said about itself (os, versions, CPU and GPU models, RAM size, ...).
    client = models.JSONField(default=dict)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]


class Emission(models.Model):
    """One ``/emissions`` body: a delta of ``duration_s`` seconds ending at ``end``.

    The energies are stored as received (kWh, the tracker's own PUE applied, 1 by default);
    ``emissions_sum_kg`` too, for reference only. ``(run, end)`` is the natural key: a replayed
    identical body is a no-op, a different one at the same instant a conflict.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="emissions")
    start = models.DateTimeField()
    end = models.DateTimeField()
    duration_s = models.FloatField()
    cpu_energy_kwh = models.FloatField()
    gpu_energy_kwh = models.FloatField()
    ram_energy_kwh = models.FloatField()
    energy_consumed_kwh = models.FloatField(null=True)
    emissions_sum_kg = models.FloatField(null=True)
    gpu_excluded = models.BooleanField(default=False)
    body_sha256 = models.CharField(max_length=64)
    received_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["end", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "end"], name="codecarbon_emission_natural_key")
        ]


class EnergyPart(models.Model):
    """The energy of one component of one Emission that fell in one hour, in J: what the
    rollup reads (``accounting.services``). The parts of an emission sum to it exactly."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    emission = models.ForeignKey(Emission, on_delete=models.CASCADE, related_name="parts")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    # gpu | cpu | ram (accounting.models.Component).
    component = models.CharField(max_length=8)
    energy_j = models.FloatField()
    seconds = models.FloatField()
    # 1 in the hour the delta starts, 0 elsewhere: rollup sample counts add up over hours.
    sample_count = models.PositiveSmallIntegerField(default=0)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["hour", "id"]
        indexes = [models.Index(fields=["organization", "hour"], name="codecarbon_part_org_hour")]
