"""Refuse NUL characters in a request's path and query string before any view sees them.

No slug, id, date or filter of ours can contain NUL, and PostgreSQL cannot store or compare text
that does (``DataError``), so a ``%00`` that reached a lookup would answer 500. One check here
covers every page and API view, including parameters a view reads with ``request.GET.get``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from ecoreport.core.api import error_body
from ecoreport.core.problems import PROBLEM_MEDIA_TYPE, PROBLEM_PATH_PREFIXES, problem_body


def _nul_in(request: HttpRequest) -> str | None:
    if "\x00" in request.path:
        return "path"
    for key, values in request.GET.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            return f"query parameter {key.replace(chr(0), '')!r}"
    return None


class RefuseNulMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        where = _nul_in(request)
        if where is None:
            return self.get_response(request)
        message = f"The {where} contains a NUL character (%00)."
        if request.path.startswith(PROBLEM_PATH_PREFIXES):
            return JsonResponse(
                problem_body(400, message), status=400, content_type=PROBLEM_MEDIA_TYPE
            )
        if request.path.startswith("/api/"):
            return JsonResponse(error_body("invalid", message), status=400)
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
