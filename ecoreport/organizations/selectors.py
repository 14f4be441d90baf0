"""Reads of the organization itself: the membership a page acts under, and its teams and
projects (the navigation of every page, dashboards and reports alike)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from ecoreport.organizations.models import Membership, Organization, Project, Team


def current_membership(request: HttpRequest) -> Membership:
    """The membership the page acts under: ``?org=`` or the session's choice, else the first.
    Someone who belongs to no organization sees nothing (404, not a hint that it exists)."""
    memberships = Membership.objects.select_related("organization").filter(user=request.user)
    wanted = request.GET.get("org") or request.session.get("org")
    membership = None
    if wanted:
        membership = memberships.filter(organization__slug=wanted).first()
    if membership is None:
        membership = memberships.order_by("organization__slug").first()
    if membership is None:
        raise Http404("You are not a member of any organization.")
    if request.session.get("org") != membership.organization.slug:
        # Written only on a change: an unchanged session is not saved again on every page.
        request.session["org"] = membership.organization.slug
    return membership


def teams_of(organization: Organization) -> QuerySet[Team]:
    return Team.objects.for_org(organization).order_by("slug")


def projects_of(organization: Organization, team: Team | None = None) -> QuerySet[Project]:
    qs = Project.objects.for_org(organization)
    if team is not None:
        qs = qs.filter(team=team)
    return qs.order_by("slug")


def label_colours(organization: Organization, by: str) -> dict[str, str]:
    """The chart colour of each team or project (``by``) of the organization, keyed by slug:
    by creation order, the same on every page and in every report."""
    from ecoreport.core.palette import colours_in_order

    model = {"team": Team, "project": Project}[by]
    slugs = model.objects.for_org(organization).order_by("pk").values_list("slug", flat=True)  # type: ignore[attr-defined]
    return colours_in_order(list(slugs))
