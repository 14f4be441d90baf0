"""Read API over the rollups."""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ecoreport.accounting.selectors import (
    GRANULARITIES,
    GROUP_FIELDS,
    PROVENANCE_FILTERS,
    UsageQuery,
    usage_for_org,
    usage_metrics,
    usage_provenance,
)
from ecoreport.core.api import TimeWindowSerializer, UtcDateTimeField, validated
from ecoreport.organizations.api import OrgApiView

MAX_HOURLY_RANGE = timedelta(days=93)


class UsageParams(TimeWindowSerializer):
    group_by = serializers.CharField(required=False, allow_blank=True, default="")
    granularity = serializers.ChoiceField(choices=GRANULARITIES, default="total")

    def validate_group_by(self, value: str) -> tuple[str, ...]:
        parts = tuple(p.strip() for p in value.split(",") if p.strip())
        unknown = [p for p in parts if p not in GROUP_FIELDS]
        if unknown:
            raise serializers.ValidationError(
                f"unknown grouping {', '.join(unknown)}; use any of {', '.join(GROUP_FIELDS)}"
            )
        if len(set(parts)) != len(parts):
            raise serializers.ValidationError("a grouping is repeated")
        return parts

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if attrs["granularity"] == "hour" and attrs["end"] - attrs["start"] > MAX_HOURLY_RANGE:
            raise serializers.ValidationError(
                {"granularity": "hourly rows are limited to 93 days; use day or coarser"}
            )
        return attrs


def _group_field(help_text: str) -> serializers.CharField:
    return serializers.CharField(required=False, allow_null=True, help_text=help_text)


_UsageRow = inline_serializer(
    "UsageRow",
    fields={
        "period_start": serializers.DateTimeField(),
        # Present when grouped by them. Slugs are the keys (for filters and links); the names
        # are what a person reads: a label in any script, invisible characters by code point.
        "team": _group_field("team slug; null for energy charged to no team"),
        "team_name": _group_field("team name to show (the slug where the name is blank)"),
        "project": _group_field("project slug; null for energy charged to no project"),
        "project_name": _group_field("project name to show (the slug where the name is blank)"),
        "host": _group_field("hostname"),
        "gpu": _group_field("GPU uuid"),
        "source": _group_field("who measured the energy: agent or codecarbon"),
        **{
            name: serializers.FloatField(allow_null=True)
            for name in usage_metrics({}, None)  # every metric of a row (docs/api.md)
        },
    },
)

_Usage = inline_serializer(
    "Usage",
    fields={
        "organization": serializers.CharField(),
        "start": serializers.DateTimeField(),
        "end": serializers.DateTimeField(),
        "granularity": serializers.ChoiceField(choices=GRANULARITIES),
        "group_by": serializers.ListField(child=serializers.CharField()),
        "rows": serializers.ListField(
            child=_UsageRow,
            help_text="one per period (and group): period_start, the groups' slugs and names, "
            "energy_kwh, co2e_kg, gpu_hours, ... (docs/api.md)",
        ),
        "totals": serializers.DictField(),
    },
)

_Provenance = inline_serializer(
    "UsageProvenance",
    fields={
        "organization": serializers.CharField(),
        "start": serializers.DateTimeField(),
        "end": serializers.DateTimeField(),
        "filters": serializers.DictField(child=serializers.CharField()),
        "components": serializers.ListField(child=serializers.DictField()),
        "totals": serializers.DictField(),
    },
)


class UsageView(OrgApiView):
    @extend_schema(
        summary="Energy and GPU usage of the caller's organization",
        parameters=[
            OpenApiParameter(
                "start", OpenApiTypes.DATETIME, description="ISO 8601; default: end - 7 days"
            ),
            OpenApiParameter(
                "end", OpenApiTypes.DATETIME, description="ISO 8601, exclusive; default: now"
            ),
            OpenApiParameter(
                "group_by", str, description="comma list of team, project, host, gpu, source"
            ),
            OpenApiParameter("granularity", str, enum=list(GRANULARITIES)),
        ],
        responses=_Usage,
    )
    def get(self, request: Request) -> Response:
        data = validated(
            UsageParams(data=request.query_params), "The query parameters are not valid."
        )
        query = UsageQuery(
            start=data["start"],
            end=data["end"],
            group_by=data["group_by"],
            granularity=data["granularity"],
        )
        result = usage_for_org(organization=self.organization, query=query)
        result["organization"] = self.organization.slug
        result["start"], result["end"] = query.start, query.end
        result["granularity"], result["group_by"] = query.granularity, list(query.group_by)
        return Response(result)


class ProvenanceParams(TimeWindowSerializer):
    start = UtcDateTimeField()
    end = UtcDateTimeField()
    team = serializers.CharField(required=False)
    project = serializers.CharField(required=False)
    host = serializers.CharField(required=False)
    gpu = serializers.CharField(required=False)

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if attrs["end"] - attrs["start"] > MAX_HOURLY_RANGE:
            raise serializers.ValidationError(
                {"end": "provenance covers at most 93 days at a time"}
            )
        return attrs


class UsageProvenanceView(OrgApiView):
    @extend_schema(
        summary="What an energy or emissions figure is made of: energy, PUE and factors",
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATETIME, required=True),
            OpenApiParameter(
                "end",
                OpenApiTypes.DATETIME,
                required=True,
                description="exclusive; at most 93 days",
            ),
            OpenApiParameter("team", str),
            OpenApiParameter("project", str),
            OpenApiParameter("host", str),
            OpenApiParameter("gpu", str),
        ],
        responses=_Provenance,
    )
    def get(self, request: Request) -> Response:
        data = validated(
            ProvenanceParams(data=request.query_params), "The query parameters are not valid."
        )
        filters = {k: data[k] for k in PROVENANCE_FILTERS if k in data}
        result = usage_provenance(
            organization=self.organization,
            start=data["start"],
            end=data["end"],
            filters=filters,
        )
        result.update(
            organization=self.organization.slug,
            start=data["start"],
            end=data["end"],
            filters=filters,
        )
        return Response(result)
