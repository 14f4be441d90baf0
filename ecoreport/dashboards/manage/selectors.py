"""Reads for the settings pages. Every one starts from the caller's organization, so an id of
another organization finds nothing (a 404), never a row."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, F, Max, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from ecoreport.carbon.models import CarbonIntensity, MarketInstrument, SitePue
from ecoreport.codecarbon.models import CodeCarbonToken
from ecoreport.fleet.models import AgentCredential, Host, Site
from ecoreport.organizations.models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    Project,
    Team,
)


def _one(qs: QuerySet[Any], pk: int, what: str) -> Any:
    found = qs.filter(pk=pk).first()
    if found is None:
        raise Http404(f"No such {what}.")
    return found


def settings_counts(organization: Organization) -> dict[str, int]:
    visible = CarbonIntensity.objects.visible_to(organization)
    return {
        "sites": Site.objects.for_org(organization).count(),
        "hosts": Host.objects.for_org(organization).count(),
        "zones": visible.values("zone").distinct().count(),
        "own_factors": CarbonIntensity.objects.filter(organization=organization).count(),
        "active_tokens": AgentCredential.objects.for_org(organization)
        .filter(revoked_at__isnull=True)
        .count(),
        "members": Membership.objects.for_org(organization).count(),
    }


# --- sites -----------------------------------------------------------------------------------


def sites_with_host_counts(organization: Organization) -> QuerySet[Site]:
    return Site.objects.for_org(organization).annotate(host_count=Count("hosts")).order_by("slug")


def site_of(organization: Organization, pk: int) -> Site:
    site: Site = _one(Site.objects.for_org(organization), pk, "site")
    return site


def sites_of(organization: Organization) -> QuerySet[Site]:
    return Site.objects.for_org(organization).order_by("slug")


def pue_periods_of(site: Site) -> QuerySet[SitePue]:
    return SitePue.objects.for_org(site.organization_id).filter(site=site).order_by("valid_from")


def instruments_of(site: Site) -> QuerySet[MarketInstrument]:
    return (
        MarketInstrument.objects.for_org(site.organization_id)
        .filter(site=site)
        .order_by("valid_from", "id")
    )


def instrument_of(site: Site, pk: int) -> MarketInstrument:
    instrument: MarketInstrument = _one(instruments_of(site), pk, "instrument")
    return instrument


def hosts_of_site(site: Site) -> QuerySet[Host]:
    return Host.objects.for_org(site.organization_id).filter(site=site).order_by("hostname")


# --- factors -------------------------------------------------------------------------------


def known_zones(organization: Organization) -> list[str]:
    """Zones with at least one factor the organization can use (shared or its own)."""
    return list(
        CarbonIntensity.objects.visible_to(organization)
        .values_list("zone", flat=True)
        .distinct()
        .order_by("zone")
    )


def factor_zones(organization: Organization) -> list[dict[str, Any]]:
    """One row per zone: how many factors, how many of them the organization's own, the latest
    period start, and which of the organization's sites use it."""
    rows = list(
        CarbonIntensity.objects.visible_to(organization)
        .values("zone")
        .annotate(
            total=Count("id"),
            own=Count("id", filter=Q(organization=organization)),
            latest_start=Max("start"),
        )
        .order_by("zone")
    )
    used: dict[str, list[str]] = {}
    for zone, slug in sites_of(organization).values_list("grid_zone", "slug"):
        used.setdefault(zone, []).append(slug)
    for row in rows:
        row["sites"] = used.get(row["zone"], [])
    return rows


def factors_of_zone(organization: Organization, zone: str) -> QuerySet[CarbonIntensity]:
    # Newest first: the factors an admin just added or imported are the ones they look for.
    return (
        CarbonIntensity.objects.visible_to(organization)
        .filter(zone=zone)
        .order_by("-start", "basis", "resolution", "-id")
    )


def own_factor_of(organization: Organization, pk: int) -> CarbonIntensity:
    """Only the organization's own factors can be removed from the pages; shared ones are
    reference data (a 404 here, like another organization's)."""
    factor: CarbonIntensity = _one(
        CarbonIntensity.objects.filter(organization=organization), pk, "factor"
    )
    return factor


# --- agents, members, API tokens -------------------------------------------------------------


def agent_credentials_of(organization: Organization) -> QuerySet[AgentCredential]:
    # Active tokens first (newest first), then the revoked ones, most recently revoked first.
    return (
        AgentCredential.objects.for_org(organization)
        .select_related("host", "host__site")
        .order_by(F("revoked_at").desc(nulls_first=True), "-created_at", "-id")
    )


def agent_credential_of(organization: Organization, pk: int) -> AgentCredential:
    credential: AgentCredential = _one(
        AgentCredential.objects.for_org(organization).select_related("host"), pk, "agent token"
    )
    return credential


def codecarbon_tokens_of(organization: Organization) -> QuerySet[CodeCarbonToken]:
    # As agent tokens: active ones first (newest first), then the revoked ones.
    return (
        CodeCarbonToken.objects.for_org(organization)
        .select_related("team", "project", "site")
        .order_by(F("revoked_at").desc(nulls_first=True), "-created_at", "-id")
    )


def codecarbon_token_of(organization: Organization, pk: int) -> CodeCarbonToken:
    token: CodeCarbonToken = _one(codecarbon_tokens_of(organization), pk, "CodeCarbon token")
    return token


def teams_and_projects_of(organization: Organization) -> tuple[QuerySet[Team], QuerySet[Project]]:
    return (
        Team.objects.for_org(organization).order_by("slug"),
        Project.objects.for_org(organization).order_by("slug"),
    )


def hosts_of(organization: Organization) -> QuerySet[Host]:
    return Host.objects.for_org(organization).order_by("hostname")


def members_of(organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.for_org(organization)
        .select_related("user")
        .annotate(active_tokens=Count("tokens", filter=Q(tokens__revoked_at__isnull=True)))
        .order_by("user__username")
    )


def invitations_pending(organization: Organization) -> QuerySet[Invitation]:
    return (
        Invitation.objects.for_org(organization)
        .filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())
        .select_related("invited_by")
        .order_by("-created_at", "-id")
    )


def invitation_of(organization: Organization, pk: int) -> Invitation:
    invitation: Invitation = _one(
        Invitation.objects.for_org(organization).select_related("organization"),
        pk,
        "invitation",
    )
    return invitation


def member_of(organization: Organization, pk: int) -> Membership:
    membership: Membership = _one(
        Membership.objects.for_org(organization).select_related("user", "organization"),
        pk,
        "member",
    )
    return membership


def api_tokens_of(organization: Organization) -> QuerySet[ApiToken]:
    return (
        ApiToken.objects.filter(membership__organization=organization)
        .select_related("membership__user")
        .order_by(F("revoked_at").desc(nulls_first=True), "-created_at", "-id")
    )


def api_token_of(organization: Organization, pk: int) -> ApiToken:
    token: ApiToken = _one(api_tokens_of(organization), pk, "API token")
    return token
