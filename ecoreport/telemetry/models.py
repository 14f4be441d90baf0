"""Raw measurements as the agents sent them. High volume; written only by ``samples_ingest``."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from ecoreport.fleet.models import Gpu, Host
from ecoreport.organizations.models import Organization, OrgScopedQuerySet, Project, Team


class IngestBatch(models.Model):
    """One accepted ingest request. Its stored answer is replayed when an agent retries it."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    batch_id = models.UUIDField()
    host = models.ForeignKey(Host, null=True, on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField(default=timezone.now)
    response = models.JSONField(default=dict)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "batch_id"], name="batch_unique_id")
        ]


class Method(models.TextChoices):
    COUNTER = "counter", "NVML energy counter"
    POWER_INTEGRATION = "power_integration", "Integrated power samples"


class Split(models.TextChoices):
    """How the agent divided a sample's energy among the processes (pods) sharing its GPU."""

    SINGLE = "single", "One process at a time"
    UTILIZATION = "utilization", "By each process's utilization"
    EVEN = "even", "Evenly (no per-process figures)"


# The raw tables (EnergySample, SampleShare) have no foreign-key constraints in the database
# (``db_constraint=False``); Django still applies on_delete (CASCADE, SET_NULL) when rows are
# deleted through the ORM, which is the only way the application deletes them. A constraint costs
# PostgreSQL a trigger, an index probe and a FOR KEY SHARE row lock per row and per key, at
# commit: for a batch of 1,000 samples with ~2,400 shares that was ~40 ms of a ~90 ms ingest, and
# concurrent batches piled MultiXact locks onto the same organization, host and GPU rows. The
# ingest writes only ids it has just read in the same transaction (its organization, host and
# GPUs, the labels it resolved, the samples it inserted). See benchmarks/README.md ("Ingest").
_RAW = {"db_constraint": False}


class EnergySample(models.Model):
    """One GPU interval. The natural key (gpu, start) makes a resent sample a duplicate."""

    # Indexes cost ingest throughput: organization is covered by (organization, start) and gpu
    # by the natural key, so their foreign keys get none of their own.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False, **_RAW
    )
    gpu = models.ForeignKey(
        Gpu, on_delete=models.CASCADE, related_name="samples", db_index=False, **_RAW
    )
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+", **_RAW)
    start = models.DateTimeField()
    end = models.DateTimeField()
    duration_s = models.FloatField()
    energy_j = models.FloatField()
    method = models.CharField(max_length=24, choices=Method.choices)
    # Blank: not said (an agent before the field, an idle interval, energy booked across the
    # agent's downtime). A database default too, so raw writes that name no split (COPY in the
    # benchmarks, bulk SQL) store blank rather than fail on NOT NULL.
    split = models.CharField(
        max_length=16, choices=Split.choices, blank=True, default="", db_default=""
    )
    gpu_util_pct = models.FloatField(null=True)
    mem_util_pct = models.FloatField(null=True)
    mem_used_mib = models.FloatField(null=True)
    power_max_w = models.FloatField(null=True)
    temperature_c = models.FloatField(null=True)
    received_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["gpu", "start"]
        constraints = [
            models.UniqueConstraint(fields=["gpu", "start"], name="sample_natural_key"),
        ]
        indexes = [models.Index(fields=["organization", "start"], name="sample_org_start")]


class SampleShare(models.Model):
    """The part of a sample's energy charged to one (team, project, job, user).

    A sample's shares always sum to its energy: the unattributed remainder is a share of its own
    (``attributed=False``), charged to the host's default team/project when there is one.
    """

    # Shares are read through their sample only; deleting a team or project (rare, by an admin)
    # may scan, which is cheaper overall than two more index writes per share on ingest.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False, **_RAW
    )
    sample = models.ForeignKey(
        EnergySample, on_delete=models.CASCADE, related_name="shares", **_RAW
    )
    team = models.ForeignKey(
        Team, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False, **_RAW
    )
    project = models.ForeignKey(
        Project, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False, **_RAW
    )
    job_id = models.CharField(max_length=128, blank=True)
    user = models.CharField(max_length=128, blank=True)
    share = models.FloatField()
    energy_j = models.FloatField()
    attributed = models.BooleanField(default=True)
    # Unattributed energy of an interval in which no process used the GPU.
    idle = models.BooleanField(default=False)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["sample", "id"]


class DirtyHour(models.Model):
    """An (organization, hour) whose rollup is out of date.

    Append-only on purpose: ingest inserts a row per hour it touched without reading or locking
    anything, so concurrent batches never queue behind one another; the rollup claims and deletes
    rows with SKIP LOCKED.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]


class LabelBudgetNotice(models.Model):
    """An organization's agents sent more new team or project labels in one UTC day than the
    label budget allows (``INGEST_MAX_NEW_LABELS_PER_BATCH`` / ``_PER_DAY``).

    One row per organization and day: created by the first refusal, which e-mails the admins
    (so they are told once a day, not once a batch); later refusals that day add to the count.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    # Labels refused that day, counted once per batch that sent them.
    refused = models.PositiveIntegerField(default=0)
    first_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(null=True, blank=True)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "day"], name="label_notice_unique_day")
        ]
