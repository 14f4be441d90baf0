"""API shapes for targets and webhooks. Validation that needs the whole target (threshold
against metric, baseline against period) is in ``TargetSerializer.validate``."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ecoreport.core.api import StrictModelSerializer, StrictSerializer
from ecoreport.organizations.models import Organization, Project, Team
from ecoreport.policies import calc, transport
from ecoreport.policies.models import AlertDelivery, Target, TargetEvaluation, Webhook


def parse_scope(organization: Organization, scope: str) -> dict[str, Any]:
    """Model fields for ``org``, ``team:SLUG`` or ``project:SLUG`` in the organization."""
    scope = scope.strip()
    if scope == "org":
        return {"scope_kind": Target.Scope.ORG, "team": None, "project": None}
    kind, sep, slug = scope.partition(":")
    if sep and kind == "team":
        team = Team.objects.for_org(organization).filter(slug=slug).first()
        if team is None:
            raise serializers.ValidationError(f"there is no team '{slug}' in this organization")
        return {"scope_kind": Target.Scope.TEAM, "team": team, "project": None}
    if sep and kind == "project":
        project = Project.objects.for_org(organization).filter(slug=slug).first()
        if project is None:
            raise serializers.ValidationError(f"there is no project '{slug}' in this organization")
        return {"scope_kind": Target.Scope.PROJECT, "team": None, "project": project}
    raise serializers.ValidationError("use 'org', 'team:SLUG' or 'project:SLUG'")


class TargetSerializer(StrictModelSerializer):
    scope = serializers.CharField(help_text="'org', 'team:SLUG' or 'project:SLUG'", default="org")
    metric = serializers.ChoiceField(choices=list(calc.METRICS))
    period = serializers.ChoiceField(choices=list(calc.PERIODS))
    threshold = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="absolute threshold in the metric's unit; omit when reduction_pct is given",
    )
    reduction_pct = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="relative form: reduce the metric by this % against the baseline period",
    )
    baseline = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="'same_period_last_year' (default), 'previous_period' or a period label "
        "such as '2025-Q4'",
    )
    period_label = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="one period ('2026-03', '2026-Q1', '2026'); blank: the current period, recurring",
    )
    unit = serializers.SerializerMethodField()

    class Meta:
        model = Target
        fields = [
            "id",
            "name",
            "scope",
            "metric",
            "comparator",
            "threshold",
            "period",
            "period_label",
            "reduction_pct",
            "baseline",
            "normalize_per_gpu_hour",
            "forecast_method",
            "is_active",
            "unit",
            "status",
            "status_changed_at",
            "last_evaluated_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "status_changed_at",
            "last_evaluated_at",
            "created_at",
            "updated_at",
        ]

    def get_unit(self, target: Target) -> str:
        unit = calc.METRICS[target.metric].unit
        return f"{unit}/GPU-h" if target.normalize_per_gpu_hour else unit

    def to_representation(self, instance: Target) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["scope"] = instance.scope
        return data

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        organization: Organization = self.context["organization"]
        now: datetime = self.context.get("now") or timezone.now()
        current = self.instance

        def pick(name: str, default: Any = None) -> Any:
            if name in attrs:
                return attrs[name]
            return getattr(current, name) if current is not None else default

        errors: dict[str, str] = {}
        if "scope" in attrs:
            try:
                attrs.update(parse_scope(organization, attrs.pop("scope")))
            except serializers.ValidationError as exc:
                errors["scope"] = exc.detail[0]  # type: ignore[index]
        metric, period = pick("metric"), pick("period")
        threshold, reduction = pick("threshold"), pick("reduction_pct")
        normalized = pick("normalize_per_gpu_hour", False)
        baseline = (pick("baseline", "") or "").strip()
        label = (pick("period_label", "") or "").strip().upper()
        attrs["period_label"] = label

        if normalized and not calc.METRICS[metric].cumulative:
            errors["normalize_per_gpu_hour"] = (
                f"{metric} is already a ratio; only totals (energy, emissions) can be normalized"
            )
        if reduction is None:
            if threshold is None:
                errors["threshold"] = (
                    "a threshold is required (or give reduction_pct for a relative target)"
                )
            elif not normalized and (problem := calc.threshold_problem(metric, threshold)):
                errors["threshold"] = problem
            elif normalized and threshold < 0:
                errors["threshold"] = "a per-GPU-hour figure is never negative"
            if baseline:
                errors["baseline"] = "a baseline only applies to a relative target (reduction_pct)"
        else:
            if threshold is not None:
                errors["threshold"] = "give either threshold or reduction_pct, not both"
            if not 0 < reduction < 100:
                errors["reduction_pct"] = (
                    "a reduction is a percentage between 0 and 100 (exclusive)"
                )
            if pick("comparator") != Target.Comparator.AT_MOST:
                errors["comparator"] = "a reduction target needs comparator 'at_most'"
            baseline = baseline or "same_period_last_year"
        attrs["baseline"] = baseline

        target_start = None
        if label:
            try:
                target_start = calc.parse_period_label(period, label)
            except ValueError as exc:
                errors["period_label"] = str(exc)
        if baseline and baseline not in calc.BASELINE_RELATIVE:
            try:
                b_start = calc.parse_period_label(period, baseline)
            except ValueError as exc:
                errors["baseline"] = f"{exc}, or use {' or '.join(calc.BASELINE_RELATIVE)}"
            else:
                first = target_start or calc.period_start(period, now)
                if calc.period_shift(period, b_start, 1) > first:
                    errors["baseline"] = (
                        f"the baseline period {baseline} must end before the target period "
                        f"{calc.period_label(period, first)} starts"
                    )
            attrs["baseline"] = baseline.upper()
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class EvaluationSerializer(serializers.ModelSerializer):
    period = serializers.SerializerMethodField()

    class Meta:
        model = TargetEvaluation
        fields = [
            "evaluated_at",
            "period",
            "period_start",
            "period_end",
            "final",
            "status",
            "value",
            "forecast_value",
            "forecast_method",
            "forecast_rate_per_day",
            "trailing_value",
            "threshold_value",
            "baseline_value",
            "gpu_hours",
            "note",
        ]

    def get_period(self, evaluation: TargetEvaluation) -> str:
        return calc.period_label(evaluation.target.period, evaluation.period_start)


class TargetStatusSerializer(serializers.Serializer):
    target = TargetSerializer()
    status = serializers.CharField()
    status_changed_at = serializers.DateTimeField(allow_null=True)
    latest = EvaluationSerializer(allow_null=True)
    history = EvaluationSerializer(many=True)


def validate_webhook_url(value: str) -> str:
    scheme = urlsplit(value).scheme.lower()
    if scheme not in ("http", "https"):
        raise serializers.ValidationError(
            f"webhook URLs must use http or https, not '{scheme or 'nothing'}'"
        )
    try:
        URLValidator(schemes=["http", "https"])(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError("this is not a valid URL") from exc
    problem = transport.registration_problem(value)
    if problem:
        raise serializers.ValidationError(problem)
    return value


class DeliverySerializer(serializers.ModelSerializer):
    alert_id = serializers.IntegerField()

    class Meta:
        model = AlertDelivery
        fields = [
            "id",
            "alert_id",
            "state",
            "attempts",
            "response_code",
            "last_error",
            "last_attempt_at",
            "sent_at",
            "created_at",
        ]


class WebhookSerializer(StrictModelSerializer):
    url = serializers.CharField(max_length=500, validators=[validate_webhook_url])
    secret = serializers.CharField(
        write_only=True,
        min_length=16,
        max_length=200,
        help_text="shared secret; deliveries carry X-EcoReport-Signature: sha256=<HMAC of the body>",
    )
    recent_deliveries = serializers.SerializerMethodField()
    failed_deliveries = serializers.SerializerMethodField()

    class Meta:
        model = Webhook
        fields = [
            "id",
            "url",
            "secret",
            "format",
            "is_active",
            "created_at",
            "failed_deliveries",
            "recent_deliveries",
        ]
        read_only_fields = ["id", "created_at"]

    @extend_schema_field(DeliverySerializer(many=True))
    def get_recent_deliveries(self, webhook: Webhook) -> list[dict[str, Any]]:
        return DeliverySerializer(
            webhook.deliveries.order_by("-created_at", "-id")[:5], many=True
        ).data

    def get_failed_deliveries(self, webhook: Webhook) -> int:
        return webhook.deliveries.filter(state=AlertDelivery.State.FAILED).count()


class AlertSubscriptionSerializer(StrictSerializer):
    email_alerts = serializers.BooleanField()
