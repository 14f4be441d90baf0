"""The savings calculator and the best time to run: thin views over the selectors."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ecoreport.core.api import StrictSerializer, TimeWindowSerializer, validated
from ecoreport.organizations.api import OrgApiView
from ecoreport.savings.assumptions import (
    SPECS,
    Assumptions,
    describe,
    sources_used,
)
from ecoreport.savings.selectors import (
    recommendations,
    savings_for_scope,
    scope_label,
    scope_parse,
)
from ecoreport.savings.windows import best_window

DEFAULT_PERIOD = timedelta(days=30)


class SavingsParams(TimeWindowSerializer):
    default_span = DEFAULT_PERIOD

    scope = serializers.CharField(required=False, default="org")


_Savings = inline_serializer(
    "Savings",
    fields={
        "organization": serializers.CharField(),
        "scope": serializers.CharField(),
        "start": serializers.DateTimeField(),
        "end": serializers.DateTimeField(),
        "assumptions": serializers.DictField(),
        "levers": serializers.ListField(
            child=serializers.DictField(),
            help_text="key, title, kind, energy_kwh, co2e_kg, cost, share_of_scope_pct, ...",
        ),
        "recommendations": serializers.ListField(
            child=inline_serializer(
                "Recommendation",
                fields={
                    "rank": serializers.IntegerField(),
                    "key": serializers.CharField(),
                    "co2e_kg": serializers.FloatField(),
                    "sentence": serializers.CharField(),
                },
            )
        ),
    },
)

_Assumptions = inline_serializer(
    "SavingsAssumptions",
    fields={"assumptions": serializers.ListField(child=serializers.DictField())},
)

_BestWindow = inline_serializer(
    "BestWindow",
    fields={
        "zone": serializers.CharField(),
        "duration_h": serializers.IntegerField(),
        "within_h": serializers.IntegerField(),
        "covered_h": serializers.IntegerField(),
        "start": serializers.DateTimeField(),
        "end": serializers.DateTimeField(),
        "avg_intensity_g_per_kwh": serializers.FloatField(),
        "now": serializers.DictField(),
        "saving_g_per_kwh": serializers.FloatField(),
        "saving_pct": serializers.FloatField(),
        "forecast": serializers.BooleanField(),
        "sources": serializers.ListField(child=serializers.CharField()),
        "hours": serializers.ListField(child=serializers.DictField()),
        "energy_kwh": serializers.FloatField(required=False),
        "saving_co2e_kg": serializers.FloatField(required=False),
    },
)


class SavingsView(OrgApiView):
    @extend_schema(
        summary="Savings levers and recommendations for a scope and period",
        parameters=[
            OpenApiParameter("scope", str, description="org (default), team:SLUG or project:SLUG"),
            OpenApiParameter(
                "start", OpenApiTypes.DATETIME, description="ISO 8601; default: end - 30 days"
            ),
            OpenApiParameter(
                "end", OpenApiTypes.DATETIME, description="ISO 8601, exclusive; default: now"
            ),
            *[
                OpenApiParameter(
                    name, float, description=f"{spec.help} ({spec.minimum:g} to {spec.maximum:g})"
                )
                for name, spec in SPECS.items()
            ],
        ],
        responses=_Savings,
    )
    def get(self, request: Request) -> Response:
        data = validated(SavingsParams(data=request.query_params))
        organization = self.organization
        assumptions = Assumptions.from_params(request.query_params)
        scope = scope_parse(organization, data["scope"])
        levers = savings_for_scope(organization, scope, data["start"], data["end"], assumptions)
        ranked = recommendations(organization, scope, data["start"], data["end"], levers=levers)
        return Response(
            {
                "organization": organization.slug,
                "scope": scope_label(scope),
                "start": data["start"],
                "end": data["end"],
                "assumptions": assumptions.as_dict(),
                # Where each default comes from, next to the value used: a source and where it
                # says so, or the unsourced flag.
                "assumption_sources": sources_used(assumptions),
                "levers": levers,
                "recommendations": [
                    {
                        "rank": r["rank"],
                        "key": r["key"],
                        "co2e_kg": r["co2e_kg"],
                        "sentence": r["sentence"],
                    }
                    for r in ranked
                ],
            }
        )


class SavingsAssumptionsView(OrgApiView):
    """The inputs of the calculator: defaults, allowed and typical ranges, and their sources."""

    @extend_schema(
        summary="Savings assumptions: defaults, ranges and sources", responses=_Assumptions
    )
    def get(self, request: Request) -> Response:
        return Response({"assumptions": describe()})


class BestWindowParams(StrictSerializer):
    zone = serializers.CharField(max_length=64)
    duration_h = serializers.IntegerField(
        error_messages={"invalid": "must be a whole number of hours"}
    )
    within_h = serializers.IntegerField(
        required=False, default=24, error_messages={"invalid": "must be a whole number of hours"}
    )
    energy_kwh = serializers.FloatField(required=False, min_value=0)

    def validate_duration_h(self, value: int) -> int:
        if value < 1:
            raise serializers.ValidationError(
                "must be at least 1 hour (durations cannot be negative)"
            )
        return value

    def validate_within_h(self, value: int) -> int:
        if value < 1:
            raise serializers.ValidationError(
                "must be at least 1 hour (windows cannot be negative)"
            )
        return value


class BestWindowView(OrgApiView):
    @extend_schema(
        summary="Best time to start a job of duration_h hours within the next within_h hours",
        parameters=[
            OpenApiParameter("zone", str, required=True, description="grid zone, e.g. FR, DE, GB"),
            OpenApiParameter("duration_h", int, required=True),
            OpenApiParameter("within_h", int, description="default 24, at most 168"),
            OpenApiParameter(
                "energy_kwh", float, description="optional: the job's energy, for a CO2e saving"
            ),
        ],
        responses=_BestWindow,
    )
    def get(self, request: Request) -> Response:
        data = validated(BestWindowParams(data=request.query_params))
        answer = best_window(
            self.organization,
            zone=data["zone"].strip(),
            duration_h=data["duration_h"],
            within_h=data["within_h"],
            now=timezone.now(),
            energy_kwh=data.get("energy_kwh"),
        )
        return Response(answer)
