"""Who may do what. A request acts in exactly one organization: the token's, or for a signed-in
user the organization of their membership (``?org=`` or the session picks among several)."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from ecoreport.organizations.models import ApiToken, Membership, Role


def request_membership(request: Request) -> Membership | None:
    """The membership the request acts under, cached on the request."""
    if hasattr(request, "_ecoreport_membership"):
        cached: Membership | None = request._ecoreport_membership
        return cached
    membership: Membership | None = None
    if isinstance(request.auth, ApiToken):
        membership = request.auth.membership
    elif request.user and request.user.is_authenticated:
        qs = Membership.objects.select_related("organization").filter(user=request.user)
        wanted = request.query_params.get("org") or request.session.get("org")
        if wanted:
            membership = qs.filter(organization__slug=wanted).first()
        else:
            membership = qs.order_by("organization__slug").first()
    request._ecoreport_membership = membership  # type: ignore[attr-defined]
    return membership


class IsOrgMember(BasePermission):
    """Any role may read; writes need ``member`` or above unless a view asks for more."""

    message = "You are not a member of an organization that can see this."

    def has_permission(self, request: Request, view: object) -> bool:
        membership = request_membership(request)
        if membership is None:
            return False
        if request.method in SAFE_METHODS:
            return True
        return membership.has_role(Role.MEMBER)


class IsOrgAdmin(BasePermission):
    """Reads for any member, writes for admins and owners."""

    message = "Only organization admins can change this."

    def has_permission(self, request: Request, view: object) -> bool:
        membership = request_membership(request)
        if membership is None:
            return False
        if request.method in SAFE_METHODS:
            return True
        return membership.has_role(Role.ADMIN)
