"""RFC 7807 problem details, for the endpoints that speak another service's contract.

The Carbon Aware SDK's WebAPI answers every error as ASP.NET's ``ValidationProblemDetails``
(``type``, ``title``, ``status``, ``detail``, ``errors``: parameter name to messages), and its
generated clients parse that shape. Views that mimic it set ``problem_exception_handler`` as
their handler: the API's own handler still decides what a failure is (status, Retry-After,
WWW-Authenticate, which field is at fault); this only re-shapes its ``{"error": ...}`` body.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from rest_framework import serializers
from rest_framework.response import Response

from ecoreport.core.api import exception_handler

PROBLEM_MEDIA_TYPE = "application/problem+json"
# The routes that answer problem details: middleware that refuses a request before any view
# (a NUL in the query) answers them in that shape too.
PROBLEM_PATH_PREFIXES = ("/api/carbon-aware/",)
# ASP.NET's own title for a request whose parameters failed validation; the SDK's clients see
# it on every 400 the framework answers.
VALIDATION_TITLE = "One or more validation errors occurred."
# The section of RFC 9110 each status is defined in, as ASP.NET 8 names them in ``type``.
_RFC9110_SECTION = {
    400: "15.5.1",
    401: "15.5.2",
    403: "15.5.4",
    404: "15.5.5",
    405: "15.5.6",
    406: "15.5.7",
    415: "15.5.16",
    429: "",  # RFC 6585, not RFC 9110
}


def problem_body(status: int, detail: str, errors: dict[str, list[str]] | None = None) -> dict:
    section = _RFC9110_SECTION.get(status)
    if status == 429:
        kind = "https://tools.ietf.org/html/rfc6585#section-4"
    elif section:
        kind = f"https://tools.ietf.org/html/rfc9110#section-{section}"
    else:
        kind = "about:blank"
    title = VALIDATION_TITLE if status == 400 else HTTPStatus(status).phrase
    body: dict[str, Any] = {"type": kind, "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return body


def _messages(details: Any) -> dict[str, list[str]] | None:
    """``details`` of the API's error shape as the problem's ``errors``: name to messages."""
    if not isinstance(details, dict):
        return None
    out: dict[str, list[str]] = {}
    for name, problems in details.items():
        items = problems if isinstance(problems, list) else [problems]
        out[str(name)] = [str(p) for p in items]
    return out


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None
    error = response.data.get("error", {}) if isinstance(response.data, dict) else {}
    response.data = problem_body(
        response.status_code, str(error.get("message", "")), _messages(error.get("details"))
    )
    response.content_type = PROBLEM_MEDIA_TYPE
    return response


class ProblemDetails(serializers.Serializer):
    """The schema of those answers (ASP.NET's ``ValidationProblemDetails``)."""

    type = serializers.CharField(help_text="a URI naming the kind of problem")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField(help_text="what was wrong, in words")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="per parameter (the SDK's names), its problems",
    )
