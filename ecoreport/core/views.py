"""Health check for load balancers and ``make demo``."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse


def _database_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, connection.vendor
    except Exception as error:  # any failure means "not healthy", with the reason shown
        return False, f"{type(error).__name__}: {error}"


def _broker_ok() -> tuple[bool, str]:
    if not settings.REDIS_URL:
        folder = settings.CELERY_DIR / "out"
        return folder.is_dir(), f"filesystem broker at {folder}"
    try:
        import redis

        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        client.ping()
        return True, "redis"
    except Exception as error:
        return False, f"{type(error).__name__}: {error}"


def healthz(request: HttpRequest) -> JsonResponse:
    db_ok, db_detail = _database_ok()
    broker_ok, broker_detail = _broker_ok()
    ok = db_ok and broker_ok
    body = {
        "status": "ok" if ok else "degraded",
        "database": {"ok": db_ok, "detail": db_detail},
        "broker": {"ok": broker_ok, "detail": broker_detail},
    }
    return JsonResponse(body, status=200 if ok else 503)
