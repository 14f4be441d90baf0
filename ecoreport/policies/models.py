"""Policy targets, their hourly evaluations, and the alerts a change of status sends."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from ecoreport.organizations.models import (
    Membership,
    Organization,
    OrgScopedQuerySet,
    Project,
    Team,
)
from ecoreport.policies.calc import METRICS, PERIODS, Status


class Target(models.Model):
    """A number the organization's policy commits to, checked every hour.

    ``threshold`` is absolute; with ``reduction_pct`` set the threshold is instead derived at each
    evaluation from the baseline period's value (and ``threshold`` is null).
    """

    class Scope(models.TextChoices):
        ORG = "org"
        TEAM = "team"
        PROJECT = "project"

    class Comparator(models.TextChoices):
        AT_MOST = "at_most"
        AT_LEAST = "at_least"

    class ForecastMethod(models.TextChoices):
        RUN_RATE = "run_rate"
        TRAILING_14D = "trailing_14d"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    scope_kind = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ORG)
    # A target follows its team or project: deleting the team deletes its targets rather than
    # silently widening them to the whole organization.
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    metric = models.CharField(max_length=32, choices=[(m, m) for m in METRICS])
    comparator = models.CharField(max_length=16, choices=Comparator.choices)
    threshold = models.FloatField(null=True, blank=True)
    period = models.CharField(max_length=16, choices=[(p, p) for p in PERIODS])
    # Blank: the target recurs (always the current period). Else one period, e.g. "2026-Q4".
    period_label = models.CharField(max_length=16, blank=True, default="")
    reduction_pct = models.FloatField(null=True, blank=True)
    # "previous_period", "same_period_last_year", or a period label such as "2025-Q4".
    baseline = models.CharField(max_length=32, blank=True, default="")
    normalize_per_gpu_hour = models.BooleanField(default=False)
    forecast_method = models.CharField(
        max_length=16, choices=ForecastMethod.choices, default=ForecastMethod.RUN_RATE
    )
    is_active = models.BooleanField(default=True)
    # The latest evaluation's status, kept on the row so a change can be claimed with one
    # conditional UPDATE (see services.target_evaluate). Blank until first evaluated.
    status = models.CharField(max_length=16, blank=True, default="")
    status_changed_at = models.DateTimeField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def scope(self) -> str:
        if self.scope_kind == self.Scope.TEAM and self.team is not None:
            return f"team:{self.team.slug}"
        if self.scope_kind == self.Scope.PROJECT and self.project is not None:
            return f"project:{self.project.slug}"
        return "org"


class TargetEvaluation(models.Model):
    """One evaluation with the numbers behind it, so history and trend can be shown."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="evaluations")
    evaluated_at = models.DateTimeField()
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # The period had ended when this was computed: the figure is final.
    final = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=[(s, s) for s in Status.ALL])
    value = models.FloatField(null=True)
    forecast_value = models.FloatField(null=True)
    forecast_method = models.CharField(max_length=16)
    forecast_rate_per_day = models.FloatField(null=True)
    trailing_value = models.FloatField(null=True)
    threshold_value = models.FloatField(null=True)
    baseline_value = models.FloatField(null=True)
    gpu_hours = models.FloatField(default=0.0)
    note = models.CharField(max_length=200, blank=True, default="")

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-evaluated_at", "-id"]
        indexes = [models.Index(fields=["target", "-evaluated_at"], name="evaluation_target_time")]


class AlertSubscription(models.Model):
    """A member's opt-in to alert emails about their teams' targets (admins always get them)."""

    membership = models.OneToOneField(
        Membership, on_delete=models.CASCADE, related_name="alert_subscription"
    )
    email_alerts = models.BooleanField(default=True)


class Webhook(models.Model):
    class Format(models.TextChoices):
        JSON = "json"
        SLACK = "slack"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=500)
    # Kept in clear: it signs every delivery. Write-only in the API.
    secret = models.CharField(max_length=200)
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.JSON)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.url


class Alert(models.Model):
    """One change of a target's status; created at most once per transition."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="alerts")
    evaluation = models.OneToOneField(
        TargetEvaluation, on_delete=models.CASCADE, related_name="alert"
    )
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]


class AlertDelivery(models.Model):
    """One alert to one channel (a webhook, or the email to all its recipients)."""

    class Channel(models.TextChoices):
        WEBHOOK = "webhook"
        EMAIL = "email"

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    webhook = models.ForeignKey(
        Webhook, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    recipients = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    response_code = models.PositiveIntegerField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "webhook"],
                name="delivery_unique_webhook",
                condition=models.Q(webhook__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["alert"],
                name="delivery_unique_email",
                condition=models.Q(channel="email"),
            ),
        ]
