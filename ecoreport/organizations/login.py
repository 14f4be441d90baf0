"""Sign-in rate limiting (django-axes): after ``LOGIN_FAILURE_LIMIT`` failed sign-ins for one
username, or from one address, within ``LOGIN_LOCKOUT_MINUTES``, that username or address is
locked out for the rest of the window. Reset: ``python manage.py axes_reset_username NAME``,
``axes_reset_ip ADDRESS`` or ``axes_reset``, or delete the attempt in the admin
(Axes, Access attempts). See docs/operations.md."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class LoginLockoutBackend(AxesStandaloneBackend):
    """Axes' lockout check for sign-ins that come with a request: the login form and the admin.

    ``authenticate()`` without a request (a management command, the test client's ``login()``)
    has no address to count against and is not reachable from outside; it goes on to the model
    backend instead of failing, as Axes' own backend would."""

    def authenticate(  # type: ignore[override]
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request: HttpRequest) -> str | None:
    """The address a failure counts against. Behind ``LOGIN_TRUSTED_PROXY_COUNT`` proxies that
    each append to X-Forwarded-For, it is the entry the outermost of them wrote (what a client
    puts further left is not to be trusted); without proxies, the socket's peer."""
    count = settings.LOGIN_TRUSTED_PROXY_COUNT
    if count > 0:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= count:
            return forwarded[-count]
    return request.META.get("REMOTE_ADDR")


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """The sign-in page's answer while locked out: 429, saying for how long and what to do."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return render(
        request,
        "registration/locked_out.html",
        {"minutes": minutes, "failure_limit": settings.AXES_FAILURE_LIMIT},
        status=429,
    )
