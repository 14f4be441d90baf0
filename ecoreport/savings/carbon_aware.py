"""The Carbon Aware SDK's WebAPI, answered from our factors: a scheduler written against the
SDK (its generated clients, its ``forecasts/current`` call) points at ``/api/carbon-aware/``.

Thin views over ``ecoreport.savings.windows``: the forecast is the best window's hours, basis
rule and averaging (``forecast_windows``), so the two APIs never disagree. What is the SDK's
here is only the contract: parameter and field names, minutes, the list per location, 204 for
no data, and errors as RFC 7807 problem details (``ecoreport.core.problems``). docs/api.md and
docs/integrations.md say where we differ from it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ecoreport.core.api import ApiError, StrictSerializer, UtcDateTimeField, validated
from ecoreport.core.problems import problem_exception_handler
from ecoreport.core.schema import ProblemSchema
from ecoreport.organizations.api import OrgApiView
from ecoreport.savings.selectors import SavingsError
from ecoreport.savings.windows import MAX_WINDOW_H, Point, forecast_windows, observed, signal_zones

# Our service's names for what went wrong, as the SDK names those parameters.
_SDK_NAMES = {
    "zone": "location",
    "start": "dataStartAt",
    "end": "dataEndAt",
    "window_min": "windowSize",
}


class CarbonAwareView(OrgApiView):
    schema = ProblemSchema()
    sdk_names: ClassVar[dict[str, str]] = _SDK_NAMES

    def get_exception_handler(self) -> Any:
        return problem_exception_handler

    def refused(self, exc: SavingsError) -> ApiError:
        name = self.sdk_names.get(exc.field or "", exc.field or "location")
        return ApiError(str(exc), details={name: [str(exc)]})


def _locations(request: Request) -> list[str]:
    """Every ``location`` of the query (the SDK repeats the parameter for several)."""
    locations = [value.strip() for value in request.query_params.getlist("location")]
    locations = [value for value in locations if value]
    if not locations:
        raise ApiError("location: is not set", details={"location": ["location is not set"]})
    for value in locations:
        if len(value) > 64:
            raise ApiError(
                "location: at most 64 characters",
                details={"location": ["Ensure this field has no more than 64 characters."]},
            )
    return locations


def _duration(seconds: int) -> str:
    """A .NET ``TimeSpan`` as System.Text.Json writes it: ``hh:mm:ss``, days as ``d.``."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days}.{text}" if days else text


# The fields are named as the SDK names its parameters (camelCase), so errors name them too.
class ForecastParams(StrictSerializer):
    dataStartAt = UtcDateTimeField(required=False)
    dataEndAt = UtcDateTimeField(required=False)
    windowSize = serializers.IntegerField(required=False, min_value=1, max_value=MAX_WINDOW_H * 60)


# The answers' shapes, for the schema; named as the SDK's OpenAPI document names them.
class EmissionsDataDTO(serializers.Serializer):
    location = serializers.CharField()
    timestamp = serializers.DateTimeField()
    duration = serializers.IntegerField(help_text="minutes")
    value = serializers.FloatField(help_text="g CO2e/kWh")


class EmissionsForecastDTO(serializers.Serializer):
    requestedAt = serializers.DateTimeField()
    generatedAt = serializers.DateTimeField()
    location = serializers.CharField()
    dataStartAt = serializers.DateTimeField()
    dataEndAt = serializers.DateTimeField()
    windowSize = serializers.IntegerField(help_text="minutes")
    optimalDataPoints = EmissionsDataDTO(many=True)
    forecastData = EmissionsDataDTO(many=True)


class EmissionsData(serializers.Serializer):
    location = serializers.CharField()
    time = serializers.DateTimeField()
    duration = serializers.CharField(help_text="a .NET TimeSpan: hh:mm:ss")
    rating = serializers.FloatField(help_text="g CO2e/kWh")


# The SDK's dictionary of locations by name; a plain schema, as drf-spectacular resolves no
# top-level DictField.
_LOCATIONS_SCHEMA = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "properties": {
            "latitude": {"type": "number", "nullable": True},
            "longitude": {"type": "number", "nullable": True},
            "name": {"type": "string"},
        },
        "required": ["latitude", "longitude", "name"],
    },
}


_LOCATION_PARAM = OpenApiParameter(
    "location",
    str,
    required=True,
    many=True,
    explode=True,
    description="grid zone, e.g. FR; repeat it for several",
    examples=[OpenApiExample("one zone", value=["FR"])],
)


def _point(zone: str, point: Point) -> dict[str, Any]:
    return {
        "location": zone,
        "timestamp": point.start,
        "duration": point.duration_s // 60,
        "value": point.intensity_g_per_kwh,
    }


class ForecastCurrentView(CarbonAwareView):
    @extend_schema(
        summary="Carbon Aware SDK: the current forecast and its optimal windows, per location",
        description="The zone's hourly signal from the current hour (marginal where it covers "
        "the window, else location-based, as /api/v1/carbon/best-window), averaged over every "
        "`windowSize`-minute window from `dataStartAt`, one hour apart; `optimalDataPoints` "
        "are the lowest. Without `dataStartAt`/`dataEndAt`, the whole forecast.",
        parameters=[
            _LOCATION_PARAM,
            OpenApiParameter(
                "dataStartAt",
                OpenApiTypes.DATETIME,
                description="ISO 8601; within the forecast; default: its first hour",
            ),
            OpenApiParameter(
                "dataEndAt",
                OpenApiTypes.DATETIME,
                description="ISO 8601; within the forecast; default: its end",
            ),
            OpenApiParameter(
                "windowSize",
                int,
                description=f"the workload's minutes, 1 to {MAX_WINDOW_H * 60}; "
                "default: one data point (60)",
            ),
        ],
        responses={200: OpenApiResponse(EmissionsForecastDTO(many=True))},
        operation_id="carbon_aware_forecasts_current",
    )
    def get(self, request: Request) -> Response:
        locations = _locations(request)
        data = validated(ForecastParams(data=request.query_params))
        now = timezone.now()
        answers = []
        for zone in locations:
            try:
                forecast = forecast_windows(
                    self.organization,
                    zone=zone,
                    now=now,
                    start=data.get("dataStartAt"),
                    end=data.get("dataEndAt"),
                    window_min=data.get("windowSize"),
                )
            except SavingsError as exc:
                raise self.refused(exc) from exc
            answers.append(
                {
                    "requestedAt": now,
                    "generatedAt": forecast.generated_at,
                    "location": zone,
                    "dataStartAt": forecast.start,
                    "dataEndAt": forecast.end,
                    "windowSize": (forecast.window_s or 3600) // 60,
                    "optimalDataPoints": [_point(zone, p) for p in forecast.optimal],
                    "forecastData": [_point(zone, p) for p in forecast.points],
                }
            )
        return Response(answers)


class ByLocationParams(StrictSerializer):
    time = UtcDateTimeField(required=False)
    toTime = UtcDateTimeField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "toTime" in attrs and "time" not in attrs:
            raise serializers.ValidationError({"time": "time must be defined if toTime is defined"})
        if "toTime" in attrs and attrs["time"] >= attrs["toTime"]:
            raise serializers.ValidationError({"time": "time must be before toTime"})
        return attrs


class ByLocationView(CarbonAwareView):
    # A period as long as the forecast's horizon is a lot of rows; much longer is a report.
    MAX_SPAN: ClassVar[timedelta] = timedelta(days=366)

    @extend_schema(
        summary="Carbon Aware SDK: the observed hourly intensity of a location over a period",
        description="Every hour of `[time, toTime)` the zone has a signal for (marginal where "
        "it has as many hours of it as location-based ones); without `toTime`, the hour "
        "`time` falls in; without `time`, the current hour. 204 when there is none.",
        parameters=[
            OpenApiParameter(
                "location",
                str,
                required=True,
                description="grid zone, e.g. FR",
                examples=[OpenApiExample("a zone", value="FR")],
            ),
            OpenApiParameter("time", OpenApiTypes.DATETIME, description="ISO 8601; default: now"),
            OpenApiParameter(
                "toTime",
                OpenApiTypes.DATETIME,
                description="ISO 8601, exclusive, after time; needs time",
            ),
        ],
        responses={
            200: OpenApiResponse(EmissionsData(many=True)),
            204: OpenApiResponse(description="No data for the location in the period."),
        },
        operation_id="carbon_aware_emissions_bylocation",
    )
    def get(self, request: Request) -> Response:
        zone = _locations(request)[0]
        data = validated(ByLocationParams(data=request.query_params))
        start: datetime = data.get("time") or timezone.now()
        end: datetime | None = data.get("toTime")
        if end is not None and end - start > self.MAX_SPAN:
            raise ApiError(
                "toTime: at most 366 days after time",
                details={"toTime": ["toTime may be at most 366 days after time"]},
            )
        _basis, points = observed(self.organization, zone=zone, start=start, end=end)
        if not points:
            return Response(status=204)
        return Response(
            [
                {
                    "location": zone,
                    "time": p.start,
                    "duration": _duration(p.duration_s),
                    "rating": p.intensity_g_per_kwh,
                }
                for p in points
            ]
        )


class LocationsView(CarbonAwareView):
    @extend_schema(
        summary="Carbon Aware SDK: the locations the other endpoints can answer for",
        description="The grid zones with hourly factors the organization can see, keyed by "
        "name (the SDK's dictionary of locations); we hold no coordinates, so they are null.",
        responses={
            200: OpenApiResponse(_LOCATIONS_SCHEMA),
            204: OpenApiResponse(description="No zone has hourly factors."),
        },
        operation_id="carbon_aware_locations",
    )
    def get(self, request: Request) -> Response:
        zones = signal_zones(self.organization)
        if not zones:
            return Response(status=204)
        return Response({z: {"latitude": None, "longitude": None, "name": z} for z in zones})
