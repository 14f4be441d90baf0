"""The CodeCarbon-compatible ingest: ``POST /api/codecarbon/runs`` and ``/emissions``, the two
calls an unmodified CodeCarbon tracker makes (``docs/integrations.md``).

The client builds the URLs by concatenation (``api_endpoint + "/runs"``), expects 201 from both
and reads ``id`` from the run's answer; it sends ``x-api-token``. Malformed bodies answer 422, as
CodeCarbon's own server does, in the API's one error shape.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ecoreport.codecarbon.authentication import (
    CodeCarbonThrottle,
    CodeCarbonTokenAuthentication,
    IsTracker,
)
from ecoreport.codecarbon.services import (
    MAX_DELTA,
    CodeCarbonError,
    EmissionIn,
    body_digest,
    emission_ingest,
    run_create,
)
from ecoreport.core.api import ApiError, StrictSerializer, UtcDateTimeField, first_problem
from ecoreport.telemetry.views import read_body


class OffsetDateTimeField(UtcDateTimeField):
    """An instant that says its UTC offset, as CodeCarbon's timestamps do: a local time without
    one would be booked to the wrong hours."""

    default_error_messages = {"naive": "Must include a UTC offset (+HH:MM or Z)."}

    def to_internal_value(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                parsed = None
            if parsed is not None and parsed.utcoffset() is None:
                self.fail("naive")
        return super().to_internal_value(value)


def _number(**kwargs: Any) -> serializers.FloatField:
    return serializers.FloatField(**kwargs)


class RunIn(StrictSerializer):
    """``RunCreate`` of CodeCarbon 3.x: only ``experiment_id`` is needed; the rest is kept as
    the run's description."""

    experiment_id = serializers.UUIDField()
    timestamp = UtcDateTimeField(required=False)
    os = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=500)
    python_version = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=64
    )
    codecarbon_version = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=64
    )
    cpu_count = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    cpu_model = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=500
    )
    gpu_count = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    gpu_model = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=500
    )
    longitude = _number(required=False, allow_null=True, min_value=-180, max_value=180)
    latitude = _number(required=False, allow_null=True, min_value=-90, max_value=90)
    region = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=128
    )
    provider = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=128
    )
    ram_total_size = _number(required=False, allow_null=True, min_value=0)
    tracking_mode = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=32
    )


def _energy(help_text: str) -> serializers.FloatField:
    return _number(min_value=0, help_text=help_text)


class EmissionBody(StrictSerializer):
    """``EmissionCreate`` of CodeCarbon 3.x: one delta. Powers, rates, utilizations and ``wue``
    may be sent and are not used."""

    timestamp = OffsetDateTimeField(help_text="end of the interval, with its UTC offset")
    run_id = serializers.UUIDField(help_text="the id POST /runs answered")
    duration = _number(
        min_value=0,
        max_value=MAX_DELTA.total_seconds(),
        help_text="seconds of the interval, > 0; it ends at timestamp",
    )
    cpu_energy = _energy("kWh of the CPU in the interval")
    gpu_energy = _energy("kWh of the GPUs in the interval")
    ram_energy = _energy("kWh of the RAM in the interval")
    energy_consumed = _number(required=False, allow_null=True, min_value=0)
    emissions_sum = _number(
        required=False,
        allow_null=True,
        min_value=0,
        help_text="the tracker's own kg CO2e: stored, never used (EcoReport applies its factors)",
    )

    def validate_duration(self, value: float) -> float:
        if not value > 0:
            raise serializers.ValidationError("must be more than 0 seconds")
        return value


def _refused(errors: Any) -> ApiError:
    return ApiError(
        f"The body is not valid: {first_problem(errors)}",
        code="invalid",
        status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        details=errors,
    )


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(read_body(request), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise _refused({"body": [f"not JSON: {error}"]}) from None
    if not isinstance(body, dict):
        raise _refused({"body": ["must be a JSON object"]})
    return body


def _no_constant(name: str) -> float:
    # NaN and Infinity are not JSON; Python's parser would take them.
    raise ValueError(f"{name} is not a number in JSON")


def _valid(serializer: StrictSerializer) -> dict[str, Any]:
    if not serializer.is_valid():
        raise _refused(serializer.errors)
    return serializer.validated_data  # type: ignore[return-value]


_RunAnswer = inline_serializer(
    "CodeCarbonRun",
    fields={
        "id": serializers.UUIDField(help_text="the run id; also the job id in EcoReport"),
        "experiment_id": serializers.UUIDField(),
        "timestamp": serializers.DateTimeField(),
        "team": serializers.CharField(),
        "project": serializers.CharField(),
        "site": serializers.CharField(),
    },
)
_EmissionAnswer = inline_serializer(
    "CodeCarbonEmission",
    fields={
        "id": serializers.IntegerField(),
        "run_id": serializers.UUIDField(),
        "duplicate": serializers.BooleanField(help_text="a replay of a stored body"),
        "booked_components": serializers.ListField(child=serializers.CharField()),
    },
)
_COMMON_RESPONSES = {
    413: OpenApiResponse(description="body too large"),
    422: OpenApiResponse(description="malformed body; `details` names the fields"),
}


class _TrackerView(APIView):
    authentication_classes = [CodeCarbonTokenAuthentication]
    permission_classes = [IsTracker]
    throttle_classes = [CodeCarbonThrottle]
    parser_classes: list = []


class RunCreateView(_TrackerView):
    @extend_schema(
        summary="Register a CodeCarbon run (CodeCarbon trackers only)",
        request=RunIn,
        responses={201: _RunAnswer, **_COMMON_RESPONSES},
        tags=["codecarbon"],
    )
    def post(self, request: Request) -> Response:
        data = _valid(RunIn(data=_json_body(request)))
        token = request.auth
        client = {k: v for k, v in data.items() if k not in ("experiment_id", "timestamp")}
        run = run_create(
            token=token,
            experiment_id=data["experiment_id"],
            started_at=data.get("timestamp") or timezone.now(),
            client=client,
        )
        return Response(
            {
                "id": str(run.run_id),
                "experiment_id": str(data["experiment_id"]),
                "timestamp": run.started_at,
                "team": token.team.slug,
                "project": token.project.slug,
                "site": token.site.slug,
            },
            status=status.HTTP_201_CREATED,
        )


class EmissionCreateView(_TrackerView):
    @extend_schema(
        summary="Book one CodeCarbon energy delta (CodeCarbon trackers only)",
        request=EmissionBody,
        responses={
            201: _EmissionAnswer,
            404: OpenApiResponse(description="no such run for this token"),
            409: OpenApiResponse(
                description="the run already has a different delta at this timestamp"
            ),
            **_COMMON_RESPONSES,
        },
        examples=[
            OpenApiExample(
                "delta",
                value={
                    "timestamp": "2026-11-28T10:01:33.608158+00:00",
                    "run_id": "33df8613-1533-4be0-a254-24ce52a522bd",
                    "duration": 120,
                    "emissions_sum": 0.0123,
                    "cpu_energy": 0.006,
                    "gpu_energy": 0.097,
                    "ram_energy": 0.0013,
                    "energy_consumed": 0.1043,
                },
                request_only=True,
            )
        ],
        tags=["codecarbon"],
    )
    def post(self, request: Request) -> Response:
        body = _json_body(request)
        data = _valid(EmissionBody(data=body))
        try:
            digest = body_digest(body)
        except ValueError as error:
            raise CodeCarbonError(str(error)) from None
        delta = EmissionIn(
            run_id=data["run_id"],
            end=data["timestamp"],
            duration_s=data["duration"],
            cpu_energy_kwh=data["cpu_energy"],
            gpu_energy_kwh=data["gpu_energy"],
            ram_energy_kwh=data["ram_energy"],
            energy_consumed_kwh=data.get("energy_consumed"),
            emissions_sum_kg=data.get("emissions_sum"),
        )
        emission, created = emission_ingest(token=request.auth, delta=delta, digest=digest)
        booked = [
            c
            for c, v in (
                ("cpu", emission.cpu_energy_kwh),
                ("gpu", 0.0 if emission.gpu_excluded else emission.gpu_energy_kwh),
                ("ram", emission.ram_energy_kwh),
            )
            if v > 0 and math.isfinite(v)
        ]
        return Response(
            {
                "id": emission.pk,
                "run_id": str(delta.run_id),
                "duplicate": not created,
                "booked_components": booked,
            },
            status=status.HTTP_201_CREATED,
        )
