"""One error shape for the whole API: ``{"error": {"code", "message", "details"}}``.

Every error the API can answer goes through here: our own ``ApiError``, the domain errors of
services and selectors (``ecoreport.core.errors.DomainError``, mapped here once), DRF's exceptions
(validation, authentication, permission, method, media type, throttling), Django's ``Http404`` and
``PermissionDenied`` raised inside a view, and unknown paths under ``/api/`` (``api_not_found``).
The OpenAPI schema documents the same shape (``ecoreport.core.schema``).

The API's ground floor is here too: ``OrgApiView`` (the caller's organization, resolved once,
and querysets that start from it), ``TimeWindowSerializer`` (``start``/``end``), strict JSON
types for request bodies (``StrictSerializer``), and ``CountedLimitOffsetPagination``. The
throttles are in ``ecoreport.core.throttling``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse, QueryDict
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, pagination, serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from ecoreport.core.errors import DomainError

# Real UTC offsets run from -12:00 to +14:00; anything wider is a typo or a probe, and
# Python would otherwise accept up to ±23:59 and shift the window by almost a day.
MAX_UTC_OFFSET = timedelta(hours=14)
# No GPU measured energy for us before 1970 or will in the 23rd century; refusing such dates
# keeps arithmetic on them (hour buckets, +1 day) far from datetime's limits.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class ApiError(exceptions.APIException):
    """A 4xx with a code and a sentence a person can act on."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        status_code: int = status.HTTP_400_BAD_REQUEST,
        details: Any = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.details = details


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # DRF turns these two into NotFound/PermissionDenied responses but leaves ``exc`` as it was;
    # convert first so they get the one error shape instead of DRF's ``{"detail": ...}``.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, DomainError):
        # A service or selector refused the input: its class says the code and status, and the
        # view may name the input its body is about for errors that name none.
        view = context.get("view")
        exc = ApiError(
            exc.api_message(),
            code=exc.code,
            status_code=exc.status_code,
            details=exc.api_details(getattr(view, "domain_error_field", None)),
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        response.data = error_body(exc.error_code, str(exc.detail), exc.details)
        return response
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("invalid", "The request is not valid.", exc.detail)
        return response
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        response.data = error_body(code, str(exc.detail))
    return response


class FileNegotiation(DefaultContentNegotiation):
    """For views that answer a file: ``Accept: application/pdf`` is what a download client
    sends, and the file is what it gets. DRF would answer 406 because no *renderer* offers
    that type; the file does not go through a renderer, and errors stay JSON."""

    def select_renderer(self, request: Any, renderers: list, format_suffix: Any = None) -> Any:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except exceptions.NotAcceptable:
            return renderers[0], renderers[0].media_type


@csrf_exempt  # a DELETE to an unknown path is a 404, not a CSRF 403 in HTML
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown paths under /api/: a JSON 404 in the API's shape, not Django's HTML page."""
    return JsonResponse(error_body("not_found", f"No API endpoint at {request.path}."), status=404)


class UtcDateTimeField(serializers.DateTimeField):
    """An ISO 8601 instant with a real UTC offset (at most ±14:00), from 1970 to 2199."""

    default_error_messages = {
        "offset": "The UTC offset must be between -14:00 and +14:00.",
        "range": "Must be between 1970-01-01 and 2200-01-01 (UTC).",
    }

    def get_value(self, dictionary: Any) -> Any:
        # DRF reads ``?start=`` from a query string as "not given" and silently uses the
        # default window; an API caller who sent a parameter meant something by it.
        value = super().get_value(dictionary)
        if value is serializers.empty and dictionary.get(self.field_name) == "":
            return ""
        return value

    def to_internal_value(self, value: Any) -> datetime:
        if value == "":
            self.fail("invalid", format="YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]")
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                parsed = None
            offset = parsed.utcoffset() if parsed is not None else None
            if offset is not None and abs(offset) > MAX_UTC_OFFSET:
                self.fail("offset")
        result = super().to_internal_value(value)
        if not EARLIEST <= result < LATEST:
            self.fail("range")
        return result


# --- views ------------------------------------------------------------------------------------
# The base classes below carry comments, not docstrings: drf-spectacular would publish an
# inherited docstring as the description of every operation and component built on them.


def not_found(what: str) -> ApiError:
    return ApiError(f"No such {what}.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)


def first_problem(errors: Mapping[str, Any]) -> str:
    """The first problem of a serializer's errors, in words: ``"end: must be after start"``."""
    field, problems = next(iter(errors.items()))
    first = problems[0] if isinstance(problems, list) and problems else problems
    return str(first) if field == "non_field_errors" else f"{field}: {first}"


def validated(serializer: serializers.Serializer, message: str | None = None) -> dict[str, Any]:
    """The serializer's validated data, or a 400 with every problem in ``details``; its message
    is ``message``, or else the first problem in words."""
    if serializer.is_valid():
        return serializer.validated_data  # type: ignore[return-value]
    errors = serializer.errors
    raise ApiError(message or first_problem(errors), details=errors)


# --- strict JSON types ------------------------------------------------------------------------


DATETIME_FORMAT = "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]"


def _json_type_ok(field: serializers.Field, value: Any) -> tuple[bool, str]:
    """Whether ``value`` has the JSON type the schema gives ``field``, and the key of the
    field's own error message for when it has not."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(field, serializers.BooleanField):
        return isinstance(value, bool), "invalid"
    if isinstance(field, serializers.IntegerField):
        # JSON Schema's integers include 2.0; booleans are not numbers there.
        return number and (not isinstance(value, float) or value.is_integer()), "invalid"
    if isinstance(field, serializers.FloatField):
        return number, "invalid"
    if isinstance(field, serializers.DecimalField):
        # The schema gives these decimals as strings ("1.300": exact, unlike a JSON number).
        if not getattr(field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING):
            return number, "invalid"
        return isinstance(value, str), "invalid"
    if isinstance(field, serializers.MultipleChoiceField | serializers.ListField):
        return isinstance(value, list), "not_a_list"
    if isinstance(field, serializers.ChoiceField):
        kinds = {type(choice) for choice in field.choices}
        return isinstance(value, str) or kinds != {str}, "invalid_choice"
    if isinstance(field, serializers.DictField):
        return isinstance(value, dict), "not_a_dict"
    if isinstance(field, serializers.ListSerializer):
        return isinstance(value, list), "not_a_list"
    if isinstance(field, serializers.Serializer):
        return isinstance(value, dict), "invalid"
    textual = (
        serializers.CharField,
        serializers.DateTimeField,
        serializers.DateField,
        serializers.TimeField,
        serializers.DurationField,
        serializers.UUIDField,
    )
    if isinstance(field, textual):
        return isinstance(value, str), "invalid"
    return True, ""


def json_type_problem(field: serializers.Field, value: Any) -> str | None:
    """Why ``value``, read from a JSON body, is not of the type the schema gives ``field``, or
    None. DRF's fields coerce (``"source": 0`` would be the string "0", ``"email_alerts": 0``
    false, ``"threshold": false`` 0.0); the schema promises types, so the API keeps to them.
    The message is the field's own for an invalid value (``A valid number is required.``).
    ``null`` is left to the field (``allow_null``); so are fields of any type (JSONField)."""
    if value is None or isinstance(field, serializers.JSONField | serializers.HiddenField):
        return None
    ok, key = _json_type_ok(field, value)
    if ok:
        return None
    kind = type(value).__name__
    template = field.error_messages.get(key, "Not a valid {input_type}.")
    return str(
        template.format(
            input=value, input_type=kind, datatype=kind, value=value, format=DATETIME_FORMAT
        )
    )


# Refuse values of another type than the schema says before DRF's fields coerce them or
# replace them by a default: in a JSON body, a value of the wrong JSON type (see
# ``json_type_problem``); in a query string, which is text, a parameter sent empty whose type
# is not text (``?granularity=``, ``?limit=``), which DRF would read as "not sent" and answer
# with the default. A text parameter sent empty is read as before. The problems are reported
# with the fields' other errors, in the fields' order. A page that hands a form's text to an
# API serializer says so with ``context={"text_input": True}``.
class StrictJsonMixin:
    def _type_problems(self, data: Any) -> dict[str, list[str]]:
        problems: dict[str, list[str]] = {}
        if self.context.get("text_input"):  # type: ignore[attr-defined]
            return problems
        for field in self._writable_fields:  # type: ignore[attr-defined]
            name = field.field_name
            if isinstance(data, QueryDict):
                if data.get(name) != "" or isinstance(field, serializers.CharField):
                    continue
                try:
                    field.run_validation("")
                except serializers.ValidationError as exc:
                    problems[name] = exc.detail  # type: ignore[assignment]
            elif isinstance(data, Mapping) and name in data:
                problem = json_type_problem(field, data[name])
                if problem:
                    problems[name] = [problem]
        return problems

    def to_internal_value(self, data: Any) -> Any:
        problems = self._type_problems(data)
        try:
            value = super().to_internal_value(data)  # type: ignore[misc]
        except serializers.ValidationError as exc:
            if not problems or not isinstance(exc.detail, dict):
                raise
            detail = {**exc.detail, **problems}
            order = [*self.fields, *detail]  # type: ignore[attr-defined]
            raise serializers.ValidationError(
                {name: detail[name] for name in dict.fromkeys(order) if name in detail}
            ) from None
        if problems:
            raise serializers.ValidationError(problems)
        return value


class StrictSerializer(StrictJsonMixin, serializers.Serializer):
    pass


class StrictModelSerializer(StrictJsonMixin, serializers.ModelSerializer):
    pass


# --- time windows and paging ------------------------------------------------------------------


# ``start`` and ``end`` of a half-open UTC window ``[start, end)``, each optional:
# ``end`` defaults to now and ``start`` to ``default_span`` before ``end``. A subclass
# declares them again as required where a default makes no sense.
class TimeWindowSerializer(StrictSerializer):
    default_span: ClassVar[timedelta] = timedelta(days=7)

    start = UtcDateTimeField(required=False)
    end = UtcDateTimeField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end = attrs.get("end") or timezone.now()
        start = attrs.get("start") or end - self.default_span
        if start >= end:
            raise serializers.ValidationError({"end": "must be after start"})
        attrs["start"], attrs["end"] = start, end
        return attrs


class CountedLimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's limit/offset paging, answered as the API always has: ``{"count": <total before
    paging>, "results": [...]}`` (no next/previous links), and a ``limit`` or ``offset`` out of
    range is a 400 that says so rather than quietly replaced by the default."""

    default_limit = 200
    max_limit = 1000

    @classmethod
    def limit_field(cls) -> serializers.IntegerField:
        """The ``limit`` parameter, for the serializer that validates a list's parameters."""
        return serializers.IntegerField(
            min_value=1, max_value=cls.max_limit, default=cls.default_limit
        )

    @classmethod
    def offset_field(cls) -> serializers.IntegerField:
        return serializers.IntegerField(min_value=0, default=0)

    def _param(self, request: Request, name: str, field: serializers.IntegerField) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return int(field.default)
        try:
            value: int = field.run_validation(raw)
        except serializers.ValidationError as exc:
            raise ApiError(
                "The query parameters are not valid.", details={name: exc.detail}
            ) from None
        return value

    def get_limit(self, request: Request) -> int:
        return self._param(request, self.limit_query_param, self.limit_field())

    def get_offset(self, request: Request) -> int:
        return self._param(request, self.offset_query_param, self.offset_field())

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"count": self.count, "results": data})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["count", "results"],
            "properties": {"count": {"type": "integer"}, "results": schema},
        }
