"""The demo organization's starting policy: a few targets of each scope kind, evaluated."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ecoreport.organizations.models import Organization, Project, Team
from ecoreport.policies.models import Target
from ecoreport.policies.services import target_create, target_evaluate

DEMO_TARGETS: list[dict[str, Any]] = [
    {
        "name": "Emissions -10% vs last quarter",
        "metric": "co2e_kg",
        "comparator": "at_most",
        "reduction_pct": 10.0,
        "baseline": "previous_period",
        "period": "quarter",
    },
    {
        "name": "Idle energy share at most 15%",
        "metric": "idle_energy_share_pct",
        "comparator": "at_most",
        "threshold": 15.0,
        "period": "month",
    },
    {
        "name": "NLP GPU utilization at least 60%",
        "scope": "nlp",
        "metric": "avg_gpu_util_pct",
        "comparator": "at_least",
        "threshold": 60.0,
        "period": "month",
    },
    {
        "name": "Vision energy -5% vs last quarter",
        "scope": "vision",
        "metric": "facility_energy_kwh",
        "comparator": "at_most",
        "reduction_pct": 5.0,
        "baseline": "previous_period",
        "period": "quarter",
        "forecast_method": "trailing_14d",
    },
    {
        "name": "Inference at most 350 Wh per GPU-hour",
        "project": "shared-inference",
        "metric": "energy_per_gpu_hour_wh",
        "comparator": "at_most",
        "threshold": 350.0,
        "period": "month",
    },
]


def targets_demo_create(*, organization: Organization, now: datetime) -> list[Target]:
    """A sensible starting policy for the demo organization (see docs/policies.md), evaluated."""
    targets = []
    for spec in DEMO_TARGETS:
        fields = dict(spec)
        team_slug, project_slug = fields.pop("scope", None), fields.pop("project", None)
        if team_slug:
            fields["team"] = Team.objects.for_org(organization).filter(slug=team_slug).first()
            fields["scope_kind"] = Target.Scope.TEAM
            if fields["team"] is None:
                continue
        if project_slug:
            fields["project"] = (
                Project.objects.for_org(organization).filter(slug=project_slug).first()
            )
            fields["scope_kind"] = Target.Scope.PROJECT
            if fields["project"] is None:
                continue
        target = target_create(organization=organization, **fields)
        target_evaluate(target=target, now=now)
        targets.append(target)
    return targets
