"""Rollups: what every dashboard, API answer and report reads."""

from __future__ import annotations

from django.db import models

from ecoreport.carbon.models import CarbonIntensity, MarketInstrument
from ecoreport.fleet.models import Gpu, Host, Site
from ecoreport.organizations.models import Organization, OrgScopedQuerySet, Project, Team


def field_names(*bases: type[models.Model]) -> list[str]:
    """The columns the given abstract bases give a model, in declaration order: the one list the
    rollup SQL, the selectors and the recompute are built from."""
    return [f.attname for base in bases for f in base._meta.local_fields]


class EnergyMeasures(models.Model):
    """Measured energy and GPU time: what every rollup table sums, the jobs' included.

    A new measure is added here (or to ``UsageMeasures``) and nowhere else, bar the SQL
    expression that computes it from a sample's share (``accounting.services._PART_SUMS``,
    checked when the module loads); the rollup's column lists are derived from these classes.
    """

    energy_j = models.FloatField(default=0.0)
    # GPU time weighted by share: a GPU shared 50/50 for an hour gives each 1,800 GPU-seconds.
    gpu_seconds = models.FloatField(default=0.0)
    # Sums from which averages are derived: util% x seconds (time-weighted) and util% x joules
    # (energy-weighted). Null utilization readings are left out of both sums and their weights.
    util_seconds = models.FloatField(default=0.0)
    util_x_seconds = models.FloatField(default=0.0)

    class Meta:
        abstract = True


class UsageMeasures(EnergyMeasures):
    """The measures of a GPU's rows and their summary, beyond what a job row carries: idle and
    unattributed energy (which no job owns), the energy-weighted utilization and sample counts."""

    idle_energy_j = models.FloatField(default=0.0)
    unattributed_energy_j = models.FloatField(default=0.0)
    # The energy the agent measured with its GPU time and idle state: the base of the GPU
    # ratios (idle share, energy per GPU-hour). A CodeCarbon tracker's energy has neither, and
    # would dilute them; ``energy_j`` still sums every source and component.
    agent_energy_j = models.FloatField(default=0.0)
    util_x_energy_j = models.FloatField(default=0.0)
    util_energy_j = models.FloatField(default=0.0)
    sample_count = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True


class Component(models.TextChoices):
    """What drew the energy. The agent measures GPUs only; CodeCarbon trackers also report the
    CPU and RAM of their host."""

    GPU = "gpu", "GPU"
    CPU = "cpu", "CPU"
    RAM = "ram", "RAM"


class Source(models.TextChoices):
    """Who measured the energy: our agent (NVML or DCGM) or a CodeCarbon tracker."""

    AGENT = "agent", "EcoReport agent"
    CODECARBON = "codecarbon", "CodeCarbon"


class EnergyDimensions(models.Model):
    """Two keys of every rollup row beside hour, site, team and project: rows of different
    components or sources are never summed into one, so each can be shown and filtered."""

    component = models.CharField(max_length=8, choices=Component.choices, default=Component.GPU)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.AGENT)

    class Meta:
        abstract = True


class EmissionFigures(models.Model):
    """Facility energy and CO2e, written by ``emissions_apply`` from a row's energy and its
    site's PUE and factors, and summed like the measures."""

    facility_energy_j = models.FloatField(default=0.0)
    co2e_g = models.FloatField(default=0.0)
    co2e_market_g = models.FloatField(default=0.0)

    class Meta:
        abstract = True


class EmissionProvenance(models.Model):
    """What a row's emissions came from: its PUE and factors, stored with the figures so that an
    answer can name them even after the factor table changes. Written by the rollup and
    rewritten only where a PUE or factor change alters them (``emissions_recompute``)."""

    pue = models.FloatField(null=True)
    intensity_g_per_kwh = models.FloatField(null=True)
    intensity_factor = models.ForeignKey(
        CarbonIntensity, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    # hour | month | year | world; ``intensity_fallback`` is true when the zone had no factor
    # of its own and the world average stood in.
    intensity_resolution = models.CharField(max_length=8, blank=True)
    intensity_fallback = models.BooleanField(default=False)
    market_intensity_g_per_kwh = models.FloatField(null=True)
    # supplier | residual | zone | location: which rung of the market-based hierarchy applied.
    market_basis = models.CharField(max_length=10, blank=True)
    market_instrument = models.ForeignKey(
        MarketInstrument, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    market_factor = models.ForeignKey(
        CarbonIntensity, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    certificate_share = models.FloatField(default=0.0)
    emissions_computed_at = models.DateTimeField(null=True)

    class Meta:
        abstract = True


class HourlyUsage(UsageMeasures, EmissionFigures, EmissionProvenance, EnergyDimensions):
    """Energy of one GPU in one hour charged to one (team, project); or, for energy a CodeCarbon
    tracker reported (``source`` codecarbon), of one component of its run's host, with no GPU or
    host row (CodeCarbon names neither).

    Rebuilt from the raw samples by ``hours_rollup``. A sample's energy is booked to each hour
    its interval overlaps, in proportion to the overlap (``docs/methodology.md``, "Proration"):
    the sum over rows of an hour is the energy measured in that hour, and the sum over hours
    equals the raw samples (conservation, tested). Seconds are split the same way;
    ``sample_count`` counts each sample (share) once, in the hour it starts.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    gpu = models.ForeignKey(Gpu, null=True, on_delete=models.CASCADE, related_name="+")
    host = models.ForeignKey(Host, null=True, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(Site, null=True, on_delete=models.SET_NULL, related_name="+")
    team = models.ForeignKey(Team, null=True, on_delete=models.SET_NULL, related_name="+")
    project = models.ForeignKey(Project, null=True, on_delete=models.SET_NULL, related_name="+")

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["hour", "gpu", "team", "project", "component", "source"]
        indexes = [
            models.Index(fields=["organization", "hour"], name="usage_org_hour"),
            # The host and GPU tables of one team's or project's page.
            models.Index(fields=["organization", "team", "hour"], name="usage_org_team_hour"),
            models.Index(fields=["organization", "project", "hour"], name="usage_org_project_hour"),
        ]


class HourlySummary(UsageMeasures, EmissionFigures, EnergyDimensions):
    """HourlyUsage summed over GPUs and hosts: one row per (hour, site, team, project,
    component, source).

    What the dashboards read: a year of a 1,000-GPU fleet is a few hundred thousand rows here
    instead of millions. Derived, never written by hand: ``summary_rebuild`` replaces the rows of
    a range from HourlyUsage after every rollup and every emissions rewrite, so the sums over
    both tables agree (tested).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    site = models.ForeignKey(
        Site, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    team = models.ForeignKey(
        Team, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    project = models.ForeignKey(
        Project, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    # Energy of the rows whose location factor was the world average standing in for the zone.
    fallback_energy_j = models.FloatField(default=0.0)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["hour", "site", "team", "project", "component", "source"]
        indexes = [
            models.Index(fields=["organization", "hour"], name="summary_org_hour"),
        ]


class HourlyJobUsage(EnergyMeasures, EmissionFigures, EnergyDimensions):
    """Energy of one job in one hour (at one site), by component and source: what the "biggest
    jobs" tables read. A CodeCarbon run is a job (its run id).

    Built from the samples' shares with a job id by ``hours_rollup``, in the same transaction as
    HourlyUsage; its emissions are written by ``emissions_apply`` with the same factors. Shares
    without a job id (idle and unattributed energy) have no row here.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    site = models.ForeignKey(
        Site, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    team = models.ForeignKey(
        Team, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    project = models.ForeignKey(
        Project, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    job_id = models.CharField(max_length=128)
    user_name = models.CharField(max_length=128, blank=True)
    gpu_count = models.PositiveIntegerField(default=0)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["hour", "job_id", "component", "source"]
        indexes = [
            models.Index(fields=["organization", "hour"], name="jobusage_org_hour"),
            models.Index(fields=["organization", "team", "hour"], name="jobusage_org_team_hour"),
            models.Index(
                fields=["organization", "project", "hour"], name="jobusage_org_project_hour"
            ),
            # A job's own page reads all its hours.
            models.Index(fields=["organization", "job_id"], name="jobusage_org_job"),
        ]
