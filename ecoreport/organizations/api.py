"""The API's base view: the caller's organization resolved once, lookups that start from it.

It lives with the organizations (the tenancy it resolves) rather than in ``core``, which
imports no domain app; the rest of the API's ground floor (errors, throttles, the time window,
pagination, strict JSON types) is ``ecoreport.core.api``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from rest_framework.request import Request
from rest_framework.views import APIView

from ecoreport.core.api import not_found
from ecoreport.core.throttling import ApiThrottle
from ecoreport.organizations.models import Membership, Organization
from ecoreport.organizations.permissions import request_membership


# The caller's organization for a DRF view, and lookups that start from it.
#
# ``request_membership`` resolves the membership once per request (the permission classes
# already did, and it is cached on the request); views read ``self.organization`` instead of
# working it out again. Every queryset starts from it, so another organization's object is
# simply not found (a 404, never a leak).
class OrgScopedMixin:
    request: Request
    #: The input a view's body is about, named in ``details`` for domain errors naming none.
    domain_error_field: ClassVar[str | None] = None

    @property
    def membership(self) -> Membership:
        membership = request_membership(self.request)
        assert membership is not None  # the permission classes refuse a request without one
        return membership

    @property
    def organization(self) -> Organization:
        return self.membership.organization

    def org_objects(self, model: type[Model]) -> QuerySet[Any]:
        """``model``'s rows of the caller's organization."""
        return model.objects.for_org(self.organization)  # type: ignore[attr-defined]

    def org_object(self, queryset: QuerySet[Any], what: str, **lookup: Any) -> Any:
        """The one row of ``queryset`` (already scoped) matching ``lookup``, else a JSON 404
        "No such <what>."."""
        found = queryset.filter(**lookup).first()
        if found is None:
            raise not_found(what)
        return found


# The API's base view: a member of one organization, throttled by ``ApiThrottle``.
class OrgApiView(OrgScopedMixin, APIView):
    throttle_classes: ClassVar[list[Any]] = [ApiThrottle]
