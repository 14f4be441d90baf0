"""Bearer tokens for the read API (users) — agents have their own in ``fleet.authentication``."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from ecoreport.organizations.models import ApiToken, hash_token

USER_TOKEN_PREFIX = "eru"
# last_used_at is bookkeeping, not an audit log: writing it on every request would turn each
# read into a write.
_TOUCH_EVERY = timedelta(minutes=5)


def bearer_token(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request):  # type: ignore[no-untyped-def]
        token = bearer_token(request)
        if token is None or not token.startswith(USER_TOKEN_PREFIX + "_"):
            return None
        api_token = (
            ApiToken.objects.select_related("membership__user", "membership__organization")
            .filter(key_hash=hash_token(token), revoked_at__isnull=True)
            .first()
        )
        if api_token is None or not api_token.membership.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        now = timezone.now()
        if api_token.last_used_at is None or now - api_token.last_used_at > _TOUCH_EVERY:
            ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=now)
        return (api_token.membership.user, api_token)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
