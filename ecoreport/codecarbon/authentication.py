"""CodeCarbon trackers authenticate with ``x-api-token: <token>`` (CodeCarbon's own header),
a hashed, revocable token bound to one team, project and site."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from ecoreport.codecarbon.models import CodeCarbonToken
from ecoreport.core.throttling import IngestThrottle
from ecoreport.organizations.authentication import active_token, token_touch


@dataclass(frozen=True)
class TrackerPrincipal:
    """Stands in for ``request.user`` on tracker requests; never a Django user."""

    token: CodeCarbonToken
    is_authenticated: bool = True
    is_active: bool = True

    @property
    def pk(self) -> int:
        return self.token.pk


class CodeCarbonTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request):  # type: ignore[no-untyped-def]
        raw = request.META.get("HTTP_X_API_TOKEN", "").strip()
        if not raw:
            raise exceptions.NotAuthenticated("Send the CodeCarbon token as 'x-api-token: …'.")
        token = active_token(
            CodeCarbonToken.objects.select_related("organization", "team", "project", "site"), raw
        )
        if token is None:
            # Also what an unconfigured tracker gets: its default api_key is the literal
            # string "api_key".
            raise exceptions.AuthenticationFailed("Invalid or revoked CodeCarbon token.")
        token_touch(token)
        return (TrackerPrincipal(token), token)

    def authenticate_header(self, request: Request) -> str:
        return 'x-api-token realm="codecarbon"'


class IsTracker(BasePermission):
    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, CodeCarbonToken)


class CodeCarbonThrottle(IngestThrottle):
    """The ingest rate, per CodeCarbon token (keyed apart from the agent credentials' ids)."""

    cache_format = "throttle_%(scope)s_codecarbon_%(ident)s"
