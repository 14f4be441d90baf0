"""Agent bearer tokens: bound to one organization and host, stored hashed, revocable."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from ecoreport.fleet.models import AgentCredential
from ecoreport.organizations.authentication import active_token, bearer_token, token_touch

AGENT_TOKEN_PREFIX = "era"


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
        credential = active_token(
            AgentCredential.objects.select_related("organization", "host", "host__site"), token
        )
        if credential is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked agent token.")
        token_touch(credential)
        return (AgentPrincipal(credential), credential)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="ingest"'


class IsAgent(BasePermission):
    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, AgentCredential)
