"""Savings for a scope and period, and recommendations: reads only (the levers themselves are
computed in ``ecoreport.savings.levers``).

Every query starts from the caller's organization and is bounded to the period. The rollup
(HourlyUsage) carries energy, facility energy and both CO2e figures per row as the carbon app
computed them; where a lever needs the factors of hours or sites the work did *not* use (timing,
region) or of raw job samples (low utilization), it asks the carbon resolver, never a table of
its own. The arithmetic is in ``ecoreport.savings.calc``.

For the pages and the API:

- ``scope_parse(organization, "org" | "team:SLUG" | "project:SLUG") -> Scope``
- ``savings_for_scope(organization, scope, start, end, assumptions) -> list[dict]`` one dict per
  lever, in ``LEVER_KEYS`` order
- ``recommendations(organization, scope, start, end, assumptions) -> list[dict]`` the levers
  that save something, largest CO2e saving first, each with a ``sentence``

The best time to run is in ``ecoreport.savings.windows``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ecoreport.accounting.scope import Scope
from ecoreport.core.errors import DomainError
from ecoreport.organizations.models import Organization, Project, Team
from ecoreport.savings import calc
from ecoreport.savings.assumptions import Assumptions
from ecoreport.savings.levers import (
    LEVER_KEYS,
    Context,
    Prices,
    idle_lever,
    low_utilization_lever,
    region_lever,
    scope_footprint,
    site_hour_energy,
    timing_lever,
    top_projects,
    what_if_lever,
)
from ecoreport.savings.sentences import sentence

MAX_PERIOD = timedelta(days=400)


class SavingsError(DomainError):
    """A request the savings selectors cannot answer; the message says why, for a person."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def api_details(self, default_field: str | None = None) -> Any:
        return {self.field: str(self)} if self.field else None  # one message, not a list


def scope_parse(organization: Organization, text: str) -> Scope:
    """``org``, ``team:SLUG`` or ``project:SLUG`` of the organization, or ``SavingsError``."""
    text = (text or "org").strip()
    if text == "org":
        return Scope(organization)
    kind, sep, slug = text.partition(":")
    if sep and kind == "team":
        team = Team.objects.for_org(organization).filter(slug=slug).first()
        if team is None:
            raise SavingsError(f"There is no team '{slug}' in this organization.", field="scope")
        return Scope(organization, team=team)
    if sep and kind == "project":
        project = Project.objects.for_org(organization).filter(slug=slug).first()
        if project is None:
            raise SavingsError(f"There is no project '{slug}' in this organization.", field="scope")
        return Scope(organization, project=project)
    raise SavingsError(
        f"Unknown scope '{text}': use 'org', 'team:SLUG' or 'project:SLUG'.", field="scope"
    )


def scope_label(scope: Scope) -> str:
    if scope.project is not None:
        return f"project:{scope.project.slug}"
    if scope.team is not None:
        return f"team:{scope.team.slug}"
    return "org"


def period_check(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise SavingsError(
            "start and end need a timezone (e.g. 2026-11-01T00:00:00Z).", field="start"
        )
    if end <= start:
        raise SavingsError("end must be after start.", field="end")
    if end - start > MAX_PERIOD:
        raise SavingsError(f"The period may be at most {MAX_PERIOD.days} days.", field="end")


def savings_for_scope(
    organization: Organization,
    scope: Scope,
    start: datetime,
    end: datetime,
    assumptions: Assumptions | None = None,
) -> list[dict[str, Any]]:
    """Every lever for the scope over ``[start, end)``, in ``LEVER_KEYS`` order.

    Each dict: key, title, kind (measured | what-if), energy_kwh (IT), facility_energy_kwh,
    co2e_kg, co2e_market_kg, cost, currency, share_of_scope_pct, assumptions, details.
    The levers overlap (idle energy is not also moved in time); do not add them up.
    """
    if scope.organization.pk != organization.pk:
        raise SavingsError("The scope belongs to another organization.", field="scope")
    period_check(start, end)
    a = assumptions or Assumptions()
    ctx = Context(organization, scope, start, end, a, Prices(organization, a))
    fp = scope_footprint(ctx)
    energy, work = site_hour_energy(ctx)
    projects = top_projects(ctx)
    return [
        idle_lever(ctx, fp),
        low_utilization_lever(ctx, fp),
        timing_lever(ctx, fp, work),
        region_lever(ctx, fp, energy),
        *(
            what_if_lever(key, ctx, fp, fraction, names, projects)
            for key, fraction, names in what_if_fractions(a)
        ),
    ]


def what_if_fractions(a: Assumptions) -> list[tuple[str, float, tuple[str, ...]]]:
    """The what-if levers' shares of the work's energy saved under ``a``, each with the names of
    the assumptions it rests on: (key, fraction, names). One definition for the scope's levers
    and the job page's."""
    return [
        (
            "precision",
            calc.fraction_saved(
                reduction_pct=a.precision_reduction_pct, already_pct=a.precision_already_pct
            ),
            ("precision_reduction_pct", "precision_already_pct"),
        ),
        (
            "architecture",
            calc.fraction_saved(
                reduction_pct=a.architecture_reduction_pct,
                applicable_pct=a.architecture_applicable_pct,
            ),
            ("architecture_reduction_pct", "architecture_applicable_pct"),
        ),
        (
            "power_capping",
            calc.fraction_saved(
                reduction_pct=a.power_cap_reduction_pct, already_pct=a.power_cap_already_pct
            ),
            ("power_cap_reduction_pct", "power_cap_already_pct"),
        ),
    ]


def recommendations(
    organization: Organization,
    scope: Scope,
    start: datetime,
    end: datetime,
    assumptions: Assumptions | None = None,
    *,
    levers: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The levers that save something, largest location-based CO2e saving first (then energy),
    each with ``rank`` and a ``sentence`` naming where the saving is.

    Pass ``levers`` (from ``savings_for_scope``) to rank them without computing them again.
    """
    if levers is None:
        levers = savings_for_scope(organization, scope, start, end, assumptions)
    useful = [lever for lever in levers if lever["co2e_kg"] > 1e-9 or lever["energy_kwh"] > 1e-9]
    useful.sort(
        key=lambda lever: (-lever["co2e_kg"], -lever["energy_kwh"], LEVER_KEYS.index(lever["key"]))
    )
    return [
        {**lever, "rank": rank, "sentence": sentence(lever)}
        for rank, lever in enumerate(useful, start=1)
    ]
