"""Reports: one row per (scope, period, version), with its files stored in the database.

An issued report is immutable: its files carry a sha256 and the factors it used are snapshotted
on the row, so a later factor change or recompute leaves the document as it was. Data that
arrives after issue makes a new version (``version`` + 1) whose ``change_note`` says what moved.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone

from ecoreport.core.errors import DomainError
from ecoreport.organizations.models import Organization, OrgScopedQuerySet, Team

FORMATS = ("pdf", "html", "csv", "xlsx")
CONTENT_TYPES = {
    "pdf": "application/pdf",
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class ImmutableReportError(DomainError, RuntimeError):
    code = "immutable"
    status_code = 409


class Report(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        GENERATING = "generating"
        ISSUED = "issued"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        ON_DEMAND = "on_demand"
        LATE_DATA = "late_data"
        COMMAND = "command"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    # Null: the whole organization. A team's report follows its team.
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    period = models.CharField(max_length=16)  # "2026-Q3", "2026-07", "2026"
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.ON_DEMAND)
    formats = models.JSONField(default=list)
    # The rollup totals the report was built from; a later difference is late data.
    data_totals = models.JSONField(default=dict)
    # Headline figures (as printed), so a change note can compare versions without a rebuild.
    headline = models.JSONField(default=dict)
    # PUE periods and carbon-intensity factors used, with values and sources, as issued.
    factor_snapshot = models.JSONField(default=dict)
    content_sha256 = models.CharField(max_length=64, blank=True)
    change_note = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # The step a build is at ("rendering pdf"), for the report's page while it runs.
    progress = models.CharField(max_length=200, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    issued_at = models.DateTimeField(null=True, blank=True)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-period_start", "team_id", "-version"]
        constraints = [
            # Two workers racing to issue the same version: one insert wins, the other fails.
            models.UniqueConstraint(
                fields=["organization", "period", "version"],
                condition=models.Q(team__isnull=True),
                name="report_unique_org_version",
            ),
            models.UniqueConstraint(
                fields=["organization", "team", "period", "version"],
                condition=models.Q(team__isnull=False),
                name="report_unique_team_version",
            ),
        ]
        indexes = [models.Index(fields=["organization", "period"], name="report_org_period")]

    def __str__(self) -> str:
        return f"{self.organization} {self.scope_label} {self.period} v{self.version}"

    @property
    def scope_label(self) -> str:
        return f"team {self.team.slug}" if self.team_id and self.team else "organization"

    @property
    def filename_stem(self) -> str:
        scope = (
            f"{self.organization.slug}-{self.team.slug}" if self.team else self.organization.slug
        )
        return f"ecoreport-{scope}-{self.period}-v{self.version}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk and not kwargs.get("force_insert"):
            stored = Report.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            if stored == Report.Status.ISSUED:
                raise ImmutableReportError(f"report {self.pk} is issued and cannot change")
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class ReportFile(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="files")
    format = models.CharField(max_length=8, choices=[(f, f) for f in FORMATS])
    # In the database rather than on a disk: issued with the report in one transaction, backed
    # up with everything else, and a few MB per quarter per scope.
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["report", "format"]
        constraints = [
            models.UniqueConstraint(fields=["report", "format"], name="reportfile_unique_format")
        ]

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk:
            raise ImmutableReportError("report files are written once")
        self.sha256 = hashlib.sha256(bytes(self.content)).hexdigest()
        self.size_bytes = len(self.content)
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class ReportSubscription(models.Model):
    """A member who wants each issued quarterly report of the organization by e-mail, with its
    files attached."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "user"], name="reportsubscription_unique_user"
            )
        ]


class ReportDelivery(models.Model):
    """One issued report e-mailed to one subscriber: sent once, retried while the mail server
    refuses, never sent twice (one row per report and address)."""

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="deliveries")
    email = models.EmailField()
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["report", "email"]
        constraints = [
            models.UniqueConstraint(fields=["report", "email"], name="reportdelivery_unique_email")
        ]
