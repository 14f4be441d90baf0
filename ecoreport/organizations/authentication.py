"""Bearer tokens for the read API (users) — agents have their own in ``fleet.authentication``,
CodeCarbon trackers theirs in ``codecarbon.authentication``; all three are ``HashedToken``s,
found and touched by the two functions here."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from ecoreport.organizations.models import ApiToken, HashedToken, hash_token

USER_TOKEN_PREFIX = "eru"
# last_used_at is bookkeeping, not an audit log: writing it on every request would turn each
# read into a write (an agent or a tracker posts every few seconds).
_TOUCH_EVERY = timedelta(minutes=5)

T = TypeVar("T", bound=HashedToken)


def active_token(tokens: QuerySet[T], raw: str) -> T | None:
    """The unrevoked token among ``tokens`` whose hash is that of ``raw``, or None."""
    return tokens.filter(key_hash=hash_token(raw), revoked_at__isnull=True).first()


def token_touch(token: HashedToken) -> None:
    """Record the use of ``token``, at most once per ``_TOUCH_EVERY``."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
        type(token)._default_manager.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


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
        api_token = active_token(
            ApiToken.objects.select_related("membership__user", "membership__organization"), token
        )
        if api_token is None or not api_token.membership.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        token_touch(api_token)
        return (api_token.membership.user, api_token)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
