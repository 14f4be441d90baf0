"""Agent bearer tokens: bound to one organization and host, stored hashed, revocable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from ecoreport.fleet.models import AgentCredential
from ecoreport.organizations.authentication import bearer_token
from ecoreport.organizations.models import hash_token

AGENT_TOKEN_PREFIX = "era"
# last_used_at is bookkeeping, refreshed at most this often: an agent posts every few seconds
# and a write per post would cost ingest throughput for no information.
_TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class AgentPrincipal:
    """Stands in for ``request.user`` on agent requests; never a Django user."""

    credential: AgentCredential
    is_authenticated: bool = True
    is_active: bool = True

    @property
    def pk(self) -> int:
        return self.credential.pk


class AgentTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request):  # type: ignore[no-untyped-def]
        token = bearer_token(request)
        if token is None:
            raise exceptions.NotAuthenticated("Send the agent token as 'Authorization: Bearer …'.")
        credential = (
            AgentCredential.objects.select_related("organization", "host", "host__site")
            .filter(key_hash=hash_token(token), revoked_at__isnull=True)
            .first()
        )
        if credential is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked agent token.")
        now = timezone.now()
        if credential.last_used_at is None or now - credential.last_used_at > _TOUCH_EVERY:
            AgentCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
            credential.last_used_at = now
        return (AgentPrincipal(credential), credential)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="ingest"'


class IsAgent(BasePermission):
    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, AgentCredential)
