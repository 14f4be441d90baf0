"""Rollups: what every dashboard, API answer and report reads."""

from __future__ import annotations

from django.db import models

from ecoreport.fleet.models import Gpu, Host, Site
from ecoreport.organizations.models import Organization, OrgScopedQuerySet, Project, Team


class HourlyUsage(models.Model):
    """Energy of one GPU in one hour charged to one (team, project).

    Rebuilt from the raw samples by ``hours_rollup``; the sum over rows equals the sum of the raw
    samples whose interval starts in the hour (conservation, tested).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    gpu = models.ForeignKey(Gpu, on_delete=models.CASCADE, related_name="+")
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(Site, null=True, on_delete=models.SET_NULL, related_name="+")
    team = models.ForeignKey(Team, null=True, on_delete=models.SET_NULL, related_name="+")
    project = models.ForeignKey(Project, null=True, on_delete=models.SET_NULL, related_name="+")
    energy_j = models.FloatField(default=0.0)
    idle_energy_j = models.FloatField(default=0.0)
    unattributed_energy_j = models.FloatField(default=0.0)
    # GPU time weighted by share: a GPU shared 50/50 for an hour gives each 1,800 GPU-seconds.
    gpu_seconds = models.FloatField(default=0.0)
    # Sums from which averages are derived: util% x seconds (time-weighted) and util% x joules
    # (energy-weighted). Null utilization readings are left out of both sums and their weights.
    util_seconds = models.FloatField(default=0.0)
    util_x_seconds = models.FloatField(default=0.0)
    util_x_energy_j = models.FloatField(default=0.0)
    util_energy_j = models.FloatField(default=0.0)
    sample_count = models.PositiveIntegerField(default=0)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["hour", "gpu", "team", "project"]
        indexes = [
            models.Index(fields=["organization", "hour"], name="usage_org_hour"),
        ]
