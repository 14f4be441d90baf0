"""The scope of a read: an organization, or one team or project of it. Every tenant-scoped read
of the rollups (the pages, savings, reports) starts here, so a query cannot begin outside the
caller's organization."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from ecoreport.accounting.models import HourlyJobUsage, HourlySummary, HourlyUsage
from ecoreport.organizations.models import Organization, Project, Team


@dataclass(frozen=True)
class Scope:
    """Organization-wide, or one team, or one project."""

    organization: Organization
    team: Team | None = None
    project: Project | None = None

    def _narrow(self, qs: QuerySet) -> QuerySet:
        if self.team is not None:
            qs = qs.filter(team=self.team)
        if self.project is not None:
            qs = qs.filter(project=self.project)
        return qs

    def usage(self) -> QuerySet[HourlyUsage]:
        return self._narrow(HourlyUsage.objects.for_org(self.organization))

    def summary(self) -> QuerySet[HourlySummary]:
        return self._narrow(HourlySummary.objects.for_org(self.organization))

    def jobs(self) -> QuerySet[HourlyJobUsage]:
        return self._narrow(HourlyJobUsage.objects.for_org(self.organization))
