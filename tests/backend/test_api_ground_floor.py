"""The API's ground floor (ecoreport.core.api, core.errors, core.throttling): domain errors mapped
once to the one error shape, strict JSON types, the time window and the paging of lists."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from ecoreport.carbon.importer import FactorError
from ecoreport.carbon.providers import ProviderError
from ecoreport.carbon.validation import CarbonInputError
from ecoreport.core.api import (
    CountedLimitOffsetPagination,
    StrictSerializer,
    TimeWindowSerializer,
    exception_handler,
)
from ecoreport.core.errors import DomainError
from ecoreport.core.periods import PeriodError as ReportPeriodError
from ecoreport.dashboards.periods import PeriodError as DashboardPeriodError
from ecoreport.fleet.services import FleetInputError
from ecoreport.organizations.services import InvitationError, MembershipError
from ecoreport.reports.models import ImmutableReportError
from ecoreport.savings.assumptions import AssumptionError
from ecoreport.savings.selectors import SavingsError
from ecoreport.savings.services import PriceError
from ecoreport.telemetry.schema import PayloadError

NOW = datetime(2026, 11, 11, tzinfo=UTC)

DOMAIN_ERRORS = [
    PayloadError,
    DashboardPeriodError,
    ReportPeriodError,
    MembershipError,
    InvitationError,
    ImmutableReportError,
    ProviderError,
    CarbonInputError,
    FactorError,
    FleetInputError,
    PriceError,
    SavingsError,
    AssumptionError,
]


@pytest.mark.parametrize("cls", DOMAIN_ERRORS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_domain_error_is_a_domain_error_and_still_what_callers_catch(cls):
    assert issubclass(cls, DomainError) and issubclass(cls, ValueError)
    if cls in (ImmutableReportError, ProviderError):
        assert issubclass(cls, RuntimeError)  # what their callers have always caught


class _PueView:
    domain_error_field = "pue"


@pytest.mark.parametrize(
    ("exc", "view", "status", "error"),
    [
        (
            CarbonInputError("A site 'dc1' already exists."),
            None,
            400,
            {"code": "invalid", "message": "A site 'dc1' already exists."},
        ),
        (
            CarbonInputError("not on a whole UTC hour", field="valid_from"),
            None,
            400,
            {
                "code": "invalid",
                "message": "not on a whole UTC hour",
                "details": {"valid_from": ["not on a whole UTC hour"]},
            },
        ),
        (
            CarbonInputError("PUE 0.5 is below 1.0"),
            _PueView(),
            400,
            {
                "code": "invalid",
                "message": "PUE 0.5 is below 1.0",
                "details": {"pue": ["PUE 0.5 is below 1.0"]},
            },
        ),
        (
            ReportPeriodError("2099-Q1 has not ended"),
            None,
            400,
            {
                "code": "invalid_period",
                "message": "2099-Q1 has not ended",
                "details": {"period": ["2099-Q1 has not ended"]},
            },
        ),
        (
            PayloadError("Expected `float`, got `str`"),
            None,
            400,
            {"code": "malformed", "message": "The batch is malformed: Expected `float`, got `str`"},
        ),
        (
            SavingsError("end must be after start.", field="end"),
            None,
            400,
            {
                "code": "invalid",
                "message": "end must be after start.",
                "details": {"end": "end must be after start."},
            },
        ),
        (
            AssumptionError("flexible_pct", "above 100%"),
            None,
            400,
            {
                "code": "invalid",
                "message": "flexible_pct: above 100%",
                "details": {"flexible_pct": "above 100%"},
            },
        ),
        (
            ImmutableReportError("report 7 is issued"),
            None,
            409,
            {"code": "immutable", "message": "report 7 is issued"},
        ),
    ],
)
def test_a_domain_error_is_answered_in_the_one_shape_with_its_code_and_status(
    exc, view, status, error
):
    response = exception_handler(exc, {"view": view})
    assert response is not None
    assert response.status_code == status
    assert response.data == {"error": error}


def test_an_exception_that_is_not_a_domain_error_is_left_to_django():
    assert exception_handler(RuntimeError("boom"), {"view": None}) is None


class _Body(StrictSerializer):
    name = serializers.CharField()
    count = serializers.IntegerField(required=False)
    ratio = serializers.FloatField(required=False, allow_null=True)
    flag = serializers.BooleanField(required=False)
    pue = serializers.DecimalField(max_digits=4, decimal_places=3, required=False)
    kind = serializers.ChoiceField(choices=["a", "b"], required=False)
    at = serializers.DateTimeField(required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    extra = serializers.JSONField(required=False)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": 0}, "name", "Not a valid string."),
        ({"name": True}, "name", "Not a valid string."),
        ({"name": "x", "count": "1"}, "count", "A valid integer is required."),
        ({"name": "x", "count": 1.5}, "count", "A valid integer is required."),
        ({"name": "x", "count": True}, "count", "A valid integer is required."),
        ({"name": "x", "ratio": False}, "ratio", "A valid number is required."),
        ({"name": "x", "ratio": "0.5"}, "ratio", "A valid number is required."),
        ({"name": "x", "flag": 0}, "flag", "Must be a valid boolean."),
        ({"name": "x", "flag": "true"}, "flag", "Must be a valid boolean."),
        ({"name": "x", "pue": 1.3}, "pue", "A valid number is required."),
        ({"name": "x", "kind": 1}, "kind", '"1" is not a valid choice.'),
        ({"name": "x", "at": 0}, "at", "Datetime has wrong format."),
        ({"name": "x", "tags": "a"}, "tags", 'Expected a list of items but got type "str".'),
    ],
)
def test_json_values_of_another_type_than_the_schema_says_are_refused(body, field, message):
    serializer = _Body(data=body)
    assert not serializer.is_valid()
    assert list(serializer.errors) == [field]
    assert message in str(serializer.errors[field][0])


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x"},
        {"name": "x", "count": 2, "ratio": 1, "flag": False, "pue": "1.300", "kind": "a"},
        {"name": "x", "count": 2.0, "ratio": 0.5, "ratio_": None, "tags": ["a"]},
        {"name": "x", "ratio": None, "at": "2026-11-11T10:00:00Z", "extra": [1, "two", None]},
    ],
)
def test_json_values_of_the_schema_s_type_are_read_as_before(body):
    serializer = _Body(data=body)
    assert serializer.is_valid(), serializer.errors


def test_query_strings_are_text_and_are_read_as_drf_reads_them():
    from django.http import QueryDict

    serializer = _Body(data=QueryDict("name=x&count=3&ratio=0.5&flag=true&pue=1.300"))
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["count"] == 3
    assert serializer.validated_data["flag"] is True


class _Window(TimeWindowSerializer):
    default_span = timedelta(days=30)


@time_machine.travel(NOW, tick=False)
def test_the_time_window_defaults_to_a_span_that_ends_now():
    window = _Window(data={})
    assert window.is_valid(), window.errors
    assert window.validated_data == {"start": NOW - timedelta(days=30), "end": NOW}
    window = TimeWindowSerializer(data={"end": "2026-11-01T00:00:00Z"})
    assert window.is_valid(), window.errors
    assert window.validated_data["start"] == datetime(2026, 10, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    "data",
    [
        {"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"},
        {"start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"},
    ],
)
def test_a_window_that_does_not_end_after_it_starts_is_refused(data):
    window = TimeWindowSerializer(data=data)
    assert not window.is_valid()
    assert window.errors == {"end": ["must be after start"]}


def test_the_paged_answer_is_count_and_results_only():
    paginator = CountedLimitOffsetPagination()
    paginator.count = 3
    assert paginator.get_paginated_response([1]).data == {"count": 3, "results": [1]}
    with pytest.raises(ValidationError):
        CountedLimitOffsetPagination.limit_field().run_validation("1001")


def _get(client, token, path, **params):
    return client.get(path, params, HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"offset": "-1"}, "offset")],
)
def test_a_page_out_of_range_is_a_400_that_names_the_parameter(client, cast, params, field):
    response = _get(client, cast.member_token, "/api/v1/carbon-intensity", **params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "The query parameters are not valid."
    assert list(error["details"]) == [field]


def test_factors_are_paged_by_limit_and_offset_with_the_total(client, cast):
    from ecoreport.carbon.models import CarbonIntensity

    total = CarbonIntensity.objects.visible_to(cast.org).count()
    assert total >= 3, "the built-in factors are loaded by a migration"
    first = _get(client, cast.member_token, "/api/v1/carbon-intensity", limit="2").json()
    second = _get(
        client, cast.member_token, "/api/v1/carbon-intensity", limit="2", offset="2"
    ).json()
    assert first["count"] == second["count"] == total
    assert len(first["results"]) == 2
    assert not {r["id"] for r in first["results"]} & {r["id"] for r in second["results"]}
    beyond = _get(client, cast.member_token, "/api/v1/carbon-intensity", offset=str(total + 5))
    assert beyond.json() == {"count": total, "results": []}


def _post(client, token, path, body):
    return client.post(
        path,
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/alerts/subscription", {"email_alerts": 0}, "email_alerts"),
        ("/api/v1/reports", {"period": 2025}, "period"),
        ("/api/v1/sites", {"slug": "dc9", "grid_zone": "FR", "pue": 1.3}, "pue"),
        (
            "/api/v1/targets",
            {
                "name": "t",
                "metric": "energy_kwh",
                "comparator": "at_most",
                "threshold": False,
                "period": "month",
            },
            "threshold",
        ),
    ],
)
def test_the_api_refuses_a_body_value_of_another_type_than_its_schema(
    client, cast, path, body, field
):
    method = "put" if "subscription" in path else "post"
    response = getattr(client, method)(
        path,
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {cast.owner_token}",
    )
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["details"]


def test_a_body_of_the_schema_s_types_is_accepted(client, cast):
    response = client.put(
        "/api/v1/alerts/subscription",
        json.dumps({"email_alerts": True}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {cast.member_token}",
    )
    assert response.status_code == 200 and response.json() == {"email_alerts": True}
    created = _post(
        client, cast.owner_token, "/api/v1/sites", {"slug": "dc9", "grid_zone": "FR", "pue": "1.3"}
    )
    assert created.status_code == 201, created.json()
    assert created.json()["pue"] == "1.300"


def test_a_pue_the_service_refuses_names_the_pue_as_before(client, cast):
    _post(client, cast.owner_token, "/api/v1/sites", {"slug": "dc9", "grid_zone": "FR"})
    response = _post(
        client,
        cast.owner_token,
        "/api/v1/sites/dc9/pue",
        {"pue": "0.500", "valid_from": "2026-01-01T00:00:00Z"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert "below 1.0" in error["message"]
    assert error["details"] == {"pue": [error["message"]]}


def test_type_problems_are_reported_with_the_other_errors_in_field_order():
    serializer = _Body(data={"count": "1", "kind": "z"})
    assert not serializer.is_valid()
    assert list(serializer.errors) == ["name", "count", "kind"]
    assert serializer.errors["name"] == ["This field is required."]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/usage", {"granularity": ""}, "granularity"),
        ("/api/v1/carbon-intensity", {"limit": ""}, "limit"),
        ("/api/v1/carbon-intensity", {"basis": ""}, "basis"),
        ("/api/v1/carbon/best-window", {"zone": "FR", "duration_h": ""}, "duration_h"),
    ],
)
def test_a_query_parameter_sent_empty_is_refused_where_it_is_not_text(
    client, cast, path, params, field
):
    response = _get(client, cast.member_token, path, **params)
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["details"]


def test_a_text_query_parameter_sent_empty_is_read_as_before(client, cast):
    everything = _get(client, cast.member_token, "/api/v1/carbon-intensity").json()
    blank_zone = _get(client, cast.member_token, "/api/v1/carbon-intensity", zone="")
    assert blank_zone.status_code == 200
    assert blank_zone.json()["count"] == everything["count"]
    usage = _get(client, cast.member_token, "/api/v1/usage", group_by="")
    assert usage.status_code == 200 and usage.json()["group_by"] == []


def test_a_form_s_text_handed_to_an_api_serializer_is_read_as_text():
    serializer = _Body(
        data={"name": "x", "count": "3", "flag": "true"}, context={"text_input": True}
    )
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["count"] == 3
