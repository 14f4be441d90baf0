"""The targets page: every target with its status and forecast, a history chart, and for admins
a form to create or edit one (validated by the same serializer as the API)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from ecoreport.core import figures
from ecoreport.core.enqueue import enqueue_on_commit
from ecoreport.dashboards.views import _page, _period, current_membership
from ecoreport.organizations.models import Role
from ecoreport.policies import calc
from ecoreport.policies.evaluation import target_history, target_period_start
from ecoreport.policies.models import Target
from ecoreport.policies.selectors import evaluations_for_target, targets_for_org
from ecoreport.policies.serializers import TargetSerializer
from ecoreport.policies.services import target_create, target_update

FORM_FIELDS = [
    "name",
    "scope",
    "metric",
    "comparator",
    "threshold",
    "period",
    "reduction_pct",
    "baseline",
    "forecast_method",
]


# The form's fields as its labels say them, for the errors the serializer reports by key.
FIELD_LABELS = {
    "name": "Name",
    "scope": "Scope",
    "metric": "Metric",
    "comparator": "Comparator",
    "threshold": "Threshold",
    "period": "Period",
    "reduction_pct": "Reduction",
    "baseline": "Baseline",
    "forecast_method": "Forecast",
    "non_field_errors": "Target",
}


def _baseline_choices(current: str) -> list[tuple[str, str]]:
    """The baseline select: none, the two relative baselines, then recent fixed periods."""
    now = timezone.now()
    choices = [("", "None (an absolute threshold)")]
    choices += [(v, text[0].upper() + text[1:]) for v, text in calc.BASELINE_LABELS.items()]
    for kind, count in (("quarter", 8), ("month", 12), ("year", 3)):
        start = calc.period_start(kind, now)
        for n in range(1, count + 1):
            shown = calc.period_label(kind, calc.period_shift(kind, start, -n))
            choices.append((shown, shown))
    if current and current not in {v for v, _ in choices}:
        choices.append((current, current))
    return choices


def _form_data(post: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for field in FORM_FIELDS:
        value = post.get(field, "").strip()
        if value == "":
            if field in ("threshold", "reduction_pct"):
                data[field] = None
            continue
        data[field] = value
    return data


def _history(target: Target) -> dict[str, Any]:
    """The history chart of ``target`` and the sentence saying where its history starts.

    Ended periods come from the rollups (``target_history``: each period evaluated as at its
    end), drawn at their ends; the current period is its hourly evaluations. Until the beat has
    evaluated a target more than once, the evaluations alone were one point on a millisecond.
    """
    now = timezone.now()
    past = target_history(target, now=now)
    start = target_period_start(target, now)
    end = calc.period_shift(target.period, start, 1)
    evaluations = list(evaluations_for_target(target, limit=24 * 120, period_start=start))[::-1]
    ended = past["periods"]
    unit = calc.METRICS[target.metric].unit
    when = [e.evaluated_at for e in evaluations]
    figure = figures.lines_over_time(
        [
            ("Each ended period", [p["period_end"] for p in ended], [p["value"] for p in ended]),
            ("This period so far", when, [e.value for e in evaluations]),
            ("Forecast for this period's end", when, [e.forecast_value for e in evaluations]),
            (
                "Threshold",
                [p["period_end"] for p in ended] + when,
                [p["threshold_value"] for p in ended] + [e.threshold_value for e in evaluations],
            ),
        ],
        title=f"{target.name}: history",
        unit=unit,
        markers=("Each ended period", "Threshold"),
        x_range=(ended[0]["period_start"] if ended else start, end),
    )
    first = past["first_usage_at"]
    if first is None:
        note = "No measured usage in this scope yet: the history starts with the first."
    else:
        shown = ended[0]["period_start"] if ended else start
        note = (
            f"History starts {shown:%Y-%m-%d}"
            + (
                f" (the last {len(ended)} {target.period}s are shown; usage was first measured"
                f" {first:%Y-%m-%d})"
                if past["truncated"]
                else f", the first measured usage of this scope being {first:%Y-%m-%d %H:%M} UTC"
            )
            + ". Ended periods are computed from the hourly rollups; this period's points are"
            " its hourly evaluations."
        )
    return {"figure": figure, "note": note, "points": len(ended) + len(evaluations)}


def _target_or_404(org: Any, raw_id: str) -> Target:
    # An id that is not a number (``?edit=abc``) names no target, like an unknown one; as a
    # lookup it would raise ValueError and answer 500.
    target = (
        targets_for_org(org).filter(pk=int(raw_id)).first()
        if raw_id.isascii() and raw_id.isdigit()
        else None
    )
    if target is None:
        raise Http404("No such target.")
    return target


@login_required
def targets(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    org = membership.organization
    is_admin = membership.has_role(Role.ADMIN)
    editing: Target | None = None
    if request.GET.get("edit"):
        editing = _target_or_404(org, request.GET["edit"])
    form_errors: list[tuple[str, Any]] = []
    form_values: dict[str, Any] = {}
    if request.method == "POST":
        if not is_admin:
            return HttpResponse("Only organization admins can change targets.", status=403)
        if request.POST.get("target_id"):
            editing = _target_or_404(org, request.POST["target_id"])
        form_values = _form_data(request.POST)
        serializer = TargetSerializer(
            instance=editing,
            data=form_values,
            partial=editing is not None,
            context={"organization": org, "text_input": True},  # a form's text, not JSON
        )
        if serializer.is_valid():
            with transaction.atomic():
                if editing is None:
                    saved = target_create(organization=org, **serializer.validated_data)
                else:
                    saved = target_update(target=editing, **serializer.validated_data)
                enqueue_on_commit("policies.evaluate_target", saved.pk)
            messages.success(request, f"Saved target “{saved.name}”.")
            return redirect(f"/targets/?target={saved.pk}")
        form_errors = [
            (FIELD_LABELS.get(field, field), errors) for field, errors in serializer.errors.items()
        ]
    period, error = _period(request)
    rows = list(targets_for_org(org))
    selected = None
    if request.GET.get("target"):
        selected = next((t for t in rows if str(t.pk) == request.GET["target"]), None)
    selected = selected or (rows[0] if rows else None)
    latest = {}
    for target in rows:
        evaluation = evaluations_for_target(target, limit=1).first()
        latest[target.pk] = evaluation
    table = [
        {
            "target": t,
            "evaluation": latest[t.pk],
            "unit": calc.METRICS[t.metric].unit,
            # A reduction of 10 % is a limit of 90 % of the baseline: said so, it reads right
            # after "at most" ("at most 10 % below" would be the opposite).
            "of_baseline_pct": None if t.reduction_pct is None else 100.0 - t.reduction_pct,
        }
        for t in rows
    ]
    history = _history(selected) if selected else None
    initial = form_values or (
        {f: getattr(editing, f, "") for f in FORM_FIELDS} if editing is not None else {}
    )
    if editing is not None and not form_values:
        initial["scope"] = editing.scope
    return _page(
        request,
        "dashboards/targets.html",
        membership=membership,
        period=period,
        error=error,
        tables={
            "targets": lambda: [
                {
                    "name": r["target"].name,
                    "scope": r["target"].scope,
                    "metric": r["target"].metric,
                    "comparator": r["target"].comparator,
                    "threshold": r["target"].threshold,
                    "reduction_pct": r["target"].reduction_pct,
                    "period": r["target"].period,
                    "status": r["target"].status or "not evaluated",
                    "value": r["evaluation"].value if r["evaluation"] else None,
                    "forecast": r["evaluation"].forecast_value if r["evaluation"] else None,
                    "unit": r["unit"],
                }
                for r in table
            ]
        },
        context={
            "rows": table,
            "selected": selected,
            "editing": editing,
            "form_errors": form_errors,
            "initial": initial,
            "metrics": calc.METRICS,
            "baselines": _baseline_choices(str(initial.get("baseline") or "")),
            "periods": calc.PERIODS,
            "teams": list(org.teams.order_by("slug")),
            "projects": list(org.projects.order_by("slug")),
            "history": history,
            "figures": {"history": history["figure"]} if history else {},
        },
    )
