"""A database that fails under a request is an outage, not a bug: say so, and when to retry.

Without this, a dropped connection (a restart, a failover, ``pg_terminate_backend``) surfaces
as Django's HTML 500. The API answers ``503`` with ``Retry-After`` in its one error shape, so
agents and scripts retry the same request (ingest is idempotent by batch id, and a batch is one
transaction: it was stored whole or not at all); pages get a short HTML 503.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from ecoreport.core.api import error_body

log = logging.getLogger(__name__)

API_PREFIX = "/api/"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Temporarily unavailable</title></head>
<body><h1>Temporarily unavailable</h1>
<p>EcoReport cannot reach its database right now. Nothing you sent was half-saved; please try
again in a few seconds.</p></body></html>
"""


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        retry_after = settings.DB_UNAVAILABLE_RETRY_AFTER_S
        log.warning(
            "db.unavailable method=%s path=%s error=%s retry_after_s=%d",
            request.method,
            request.path,
            type(exception).__name__,
            retry_after,
        )
        response: HttpResponse
        if request.path.startswith(API_PREFIX):
            response = JsonResponse(
                error_body(
                    "unavailable",
                    "The database is unavailable; nothing was stored. Retry the same request"
                    f" in {retry_after} s.",
                ),
                status=503,
            )
        else:
            response = HttpResponse(_PAGE, status=503, content_type="text/html; charset=utf-8")
        response["Retry-After"] = str(retry_after)
        return response
