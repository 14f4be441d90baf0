"""One error shape for the whole API: ``{"error": {"code", "message", "details"}}``.

Every error the API can answer goes through here: our own ``ApiError``, DRF's exceptions
(validation, authentication, permission, method, media type, throttling), Django's ``Http404`` and
``PermissionDenied`` raised inside a view, and unknown paths under ``/api/`` (``api_not_found``).
The OpenAPI schema documents the same shape (``ecoreport.core.schema``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, parsers, serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.utils import json
from rest_framework.views import exception_handler as drf_exception_handler

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


def _hostile_string(data: Any, depth: int = 0) -> str | None:
    """Why a parsed JSON document cannot be stored, or None: text with NUL characters or lone
    surrogates ("\\ud800" is valid JSON but not UTF-8, so PostgreSQL and every encoder refuse it)."""
    if depth > 64:
        return "the document is nested too deeply"
    if isinstance(data, str):
        if "\x00" in data:
            return "text must not contain NUL characters"
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return "text must not contain lone surrogates (\\ud800-\\udfff)"
        return None
    if isinstance(data, dict):
        items: Any = [*data.keys(), *data.values()]
    elif isinstance(data, list):
        items = data
    else:
        return None
    for item in items:
        problem = _hostile_string(item, depth + 1)
        if problem:
            return problem
    return None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing what would otherwise surface as a 500 further in: documents
    nested past the interpreter's recursion limit, lone surrogates and NUL characters."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            parse_constant = json.strict_constant if self.strict else None
            data = json.loads(stream.read().decode(encoding), parse_constant=parse_constant)
        except RecursionError:
            raise exceptions.ParseError(
                "JSON parse error - the document is nested too deeply."
            ) from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        problem = _hostile_string(data)
        if problem:
            raise exceptions.ParseError(f"JSON parse error - {problem}.")
        return data


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
