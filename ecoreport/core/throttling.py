"""The API's throttles (``ApiThrottle``, ``IngestThrottle``), which keep limiting, per process,
while the shared cache is unreachable.

The shared (Redis) cache gives one limit across every web process. When it is down the
fail-soft cache answers "no history", which alone would turn throttling off: instead the
request is counted in this process's memory, so each process still enforces the rate on what
it serves. The fallback is logged once per outage window and per process.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import caches
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from ecoreport.core.cache import is_down

log = logging.getLogger(__name__)

LOCAL_CACHE = "local"


class LocalFallbackThrottleMixin:
    cache: Any
    scope: str
    _fallback_logged_until = 0.0

    def allow_request(self, request: Request, view: APIView) -> bool:
        allowed = super().allow_request(request, view)  # type: ignore[misc]
        if not is_down(self.cache):
            return bool(allowed)
        now = time.monotonic()
        if now >= LocalFallbackThrottleMixin._fallback_logged_until:
            LocalFallbackThrottleMixin._fallback_logged_until = now + 60.0
            log.warning(
                "throttle.local_fallback scope=%s: the shared cache is unreachable; limits are"
                " counted per process until it is back",
                self.scope,
            )
        self.cache = caches[LOCAL_CACHE]
        return bool(super().allow_request(request, view))  # type: ignore[misc]


class ApiThrottle(LocalFallbackThrottleMixin, UserRateThrottle):
    """The read and management API's limit (``API_THROTTLE_RATE``), per user or token."""

    scope = "api"


class IngestThrottle(LocalFallbackThrottleMixin, SimpleRateThrottle):
    """Per agent credential (``INGEST_THROTTLE_RATE``); the answer's Retry-After tells the
    agent when to come back."""

    scope = "ingest"

    def get_cache_key(self, request: Request, view: APIView) -> str:
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
