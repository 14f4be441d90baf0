"""The savings calculator page (``/savings/``), the JSON its script fetches when an input changes
(``/savings/results.json``), and the "top recommendations" fragment that the overview and the
team/project dashboards load after their own render (``/savings/top/``).

All three read the same query parameters: the period picker's (``period``, ``start``, ``end``),
``scope`` (``org``, ``team:SLUG``, ``project:SLUG``) and one parameter per savings assumption,
named like the fields of ``Assumptions``. The arithmetic is the savings app's
(``ecoreport.savings.selectors``); these views only parse, call and render.

The fragment exists because the savings engine reads raw job samples and carbon factors for
every lever: heavier than the dashboards' rollup queries, so the dashboards render first and
fetch their recommendations afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse

from ecoreport.core import figures
from ecoreport.core.api import error_body
from ecoreport.dashboards.periods import Period
from ecoreport.dashboards.selectors import Scope, projects_of, teams_of
from ecoreport.dashboards.views import _page, _period, current_membership
from ecoreport.organizations.models import Membership, Organization
from ecoreport.savings.assumptions import (
    SPECS,
    UNSOURCED,
    AssumptionError,
    Assumptions,
    describe,
    sources_used,
)
from ecoreport.savings.conf import default_currency
from ecoreport.savings.levers import TITLES
from ecoreport.savings.selectors import (
    SavingsError,
    recommendations,
    savings_for_scope,
    scope_label,
    scope_parse,
)

TOP = 3
FIGURE_ID = "savings-levers"
LABELS = {
    "idle_recoverable_pct": "Idle energy that can be removed",
    "low_util_threshold_pct": "Low GPU utilization threshold",
    "low_mem_threshold_pct": "Low GPU memory threshold",
    "consolidation_reduction_pct": "Energy saved by consolidating a candidate",
    "flexible_pct": "Work that may start later",
    "timing_window_h": "Window to shift work within",
    "precision_reduction_pct": "Energy saved by mixed precision",
    "precision_already_pct": "Work already in reduced precision",
    "architecture_reduction_pct": "Energy saved by a smaller model",
    "architecture_applicable_pct": "Work where a smaller model would do",
    "power_cap_reduction_pct": "Energy saved by power capping",
    "power_cap_already_pct": "Work already power-capped",
    "price_per_kwh": "Electricity price for every site",
}
# The form's fieldsets: the inputs each lever uses, in the order of the results table.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (TITLES["idle"], ("idle_recoverable_pct",)),
    (
        TITLES["low_utilization"],
        ("low_util_threshold_pct", "low_mem_threshold_pct", "consolidation_reduction_pct"),
    ),
    (TITLES["carbon_aware_timing"], ("flexible_pct", "timing_window_h")),
    (TITLES["precision"], ("precision_reduction_pct", "precision_already_pct")),
    (TITLES["architecture"], ("architecture_reduction_pct", "architecture_applicable_pct")),
    (TITLES["power_capping"], ("power_cap_reduction_pct", "power_cap_already_pct")),
    ("Cost", ("price_per_kwh",)),
)
# The page's own parameters that a shared link must keep, besides scope and the assumptions.
PASSED_ON = ("org", "period", "start", "end")


@dataclass
class Inputs:
    membership: Membership
    period: Period
    period_error: str | None
    scope: Scope
    assumptions: Assumptions
    errors: dict[str, str]  # field -> message, for the form

    @property
    def organization(self) -> Organization:
        return self.membership.organization


def _assumptions(params: QueryDict) -> tuple[Assumptions, dict[str, str]]:
    """Every valid override, and a message for each invalid one (all of them, not just the
    first, so the form can mark every field that needs fixing at once)."""
    valid: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in SPECS:
        raw = params.get(name)
        try:
            Assumptions.from_params({name: raw})
        except AssumptionError as exc:
            errors[name] = exc.message
        else:
            if raw is not None:
                valid[name] = raw
    return Assumptions.from_params(valid), errors


def _inputs(request: HttpRequest) -> Inputs:
    """Raises Http404 for a scope that is not one of the caller's organization: the message is
    the same whether the team exists elsewhere or nowhere."""
    membership = current_membership(request)
    period, period_error = _period(request)
    try:
        scope = scope_parse(membership.organization, request.GET.get("scope") or "org")
    except SavingsError as exc:
        raise Http404(str(exc)) from None
    assumptions, errors = _assumptions(request.GET)
    return Inputs(membership, period, period_error, scope, assumptions, errors)


def _compute(inputs: Inputs) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The levers and the ranked recommendations; ``SavingsError`` (a period too long for the
    savings engine) is recorded as an error of the period instead."""
    if inputs.errors:
        return [], []
    org, period = inputs.organization, inputs.period
    try:
        levers = savings_for_scope(org, inputs.scope, period.start, period.end, inputs.assumptions)
    except SavingsError as exc:
        # The scope is the caller's organization's (checked in _inputs): what is left is the
        # period, e.g. a custom one longer than the savings engine answers.
        inputs.errors["period"] = str(exc)
        return [], []
    ranked = recommendations(org, inputs.scope, period.start, period.end, levers=levers)
    return levers, ranked


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _state_query(request: HttpRequest, inputs: Inputs) -> str:
    """The shortest query that reproduces the calculator's state: the period, a scope other
    than the organization, and the assumptions that differ from their defaults."""
    query = QueryDict(mutable=True)
    for key in PASSED_ON:
        if request.GET.get(key):
            query[key] = request.GET[key]
    label = scope_label(inputs.scope)
    if label != "org":
        query["scope"] = label
    defaults = Assumptions()
    for name in SPECS:
        value = getattr(inputs.assumptions, name)
        if value != getattr(defaults, name):
            query[name] = _fmt(value)
    return query.urlencode()


def _unit(name: str, currency: str) -> str:
    if name.endswith("_pct"):
        return "%"
    if name.endswith("_h"):
        return "h"
    return f"{currency}/kWh"


def _fields(request: HttpRequest, errors: dict[str, str], currency: str) -> list[dict[str, Any]]:
    """The form's fieldsets; each input shows what was typed (so a bad value can be corrected)
    or else the default."""
    described = {d["name"]: d for d in describe()}
    groups = []
    for legend, names in GROUPS:
        inputs = []
        for name in names:
            d = described[name]
            typed = request.GET.get(name)
            inputs.append(
                {
                    **d,
                    "label": LABELS[name],
                    "unit": _unit(name, currency),
                    "value": typed if typed is not None else _fmt(d["default"]),
                    "default_text": _fmt(d["default"]) if d["default"] is not None else None,
                    "minimum_text": _fmt(d["minimum"]),
                    "maximum_text": _fmt(d["maximum"]),
                    "typical_text": (
                        f"{_fmt(d['typical'][0])} to {_fmt(d['typical'][1])}"
                        if d["typical"]
                        else None
                    ),
                    "step": "1" if d["integer"] else "any",
                    "error": errors.get(name),
                    "source_text": (
                        f"Source: {d['source']['short']}, {d['source']['where']}"
                        if d["source"]
                        else d["unsourced"].capitalize()
                    ),
                }
            )
        groups.append({"legend": legend, "inputs": inputs})
    return groups


def _scope_choices(organization: Organization) -> list[dict[str, Any]]:
    return [
        {
            "label": "Organization",
            "options": [("org", f"Whole organization ({organization.name})")],
        },
        {
            "label": "Teams",
            "options": [(f"team:{t.slug}", t.name or t.slug) for t in teams_of(organization)],
        },
        {
            "label": "Projects",
            "options": [(f"project:{p.slug}", p.name or p.slug) for p in projects_of(organization)],
        },
    ]


def _scope_name(scope: Scope) -> str:
    if scope.project is not None:
        return f"project {scope.project.name or scope.project.slug}"
    if scope.team is not None:
        return f"team {scope.team.name or scope.team.slug}"
    return f"{scope.organization.name} (whole organization)"


def _chart(levers: list[dict[str, Any]]) -> dict[str, str]:
    # CO2e when the scope has any (share_of_scope_pct is set exactly then), else energy: a chart
    # of zeros would say nothing. Decided by the measurements, not the assumptions, so the unit
    # does not flip while someone is typing.
    if any(lever["share_of_scope_pct"] is not None for lever in levers):
        return {
            "metric": "co2e_kg",
            "unit": "kg CO₂e",
            "title": "Emissions saved per lever, location-based",
        }
    return {"metric": "energy_kwh", "unit": "kWh", "title": "IT energy saved per lever"}


def _figure(levers: list[dict[str, Any]]) -> dict[str, Any]:
    chart = _chart(levers)
    return figures.savings_by_lever(
        levers, metric=chart["metric"], title=chart["title"], unit=chart["unit"]
    )


def _source_rows(assumptions: Assumptions, currency: str) -> list[dict[str, Any]]:
    """The table of where each assumption comes from: the value used, the default, the
    source's own figure and where it is stated, or the unsourced flag."""
    rows = []
    for name, record in sources_used(assumptions).items():
        source = record["source"]
        unit = _unit(name, currency)
        rows.append(
            {
                "name": name,
                "label": LABELS[name],
                "unit": unit,
                "value_text": _fmt(record["value"]) or "each site's price",
                "default_text": _fmt(record["default"]) or "each site's price",
                "figure": source["figure"] if source else None,
                "title": source["title"] if source else None,
                "where": source["where"] if source else None,
                "unsourced": record["unsourced"],
                "rationale": record["rationale"].rstrip("."),
                "typical_basis": record["typical_basis"],
                "changed": record["value"] != record["default"],
            }
        )
    return rows


def _results_context(
    request: HttpRequest,
    inputs: Inputs,
    levers: list[dict[str, Any]],
    ranked: list[dict[str, Any]],
) -> dict[str, Any]:
    currencies = {lever["currency"] for lever in levers}
    return {
        "levers": levers,
        "recommendations": ranked,
        "chart": _chart(levers),
        "scope_name": _scope_name(inputs.scope),
        "period": inputs.period,
        "state_query": _state_query(request, inputs),
        "cost_currency": currencies.pop() if len(currencies) == 1 else None,
        "sources": _source_rows(inputs.assumptions, default_currency()),
        "unsourced_flag": UNSOURCED,
    }


def _lever_rows(levers: list[dict[str, Any]], ranked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_key = {r["key"]: r for r in ranked}
    rows = []
    for lever in levers:
        used = {
            k: v for k, v in lever["assumptions"].items() if k in SPECS and v is not None
        }  # the prices per site are in the API's answer; the CSV keeps the inputs
        rows.append(
            {
                "lever": lever["key"],
                "title": lever["title"],
                "kind": lever["kind"],
                "energy_kwh": lever["energy_kwh"],
                "facility_energy_kwh": lever["facility_energy_kwh"],
                "co2e_kg": lever["co2e_kg"],
                "co2e_market_kg": lever["co2e_market_kg"],
                "cost": lever["cost"],
                "currency": lever["currency"],
                "share_of_scope_pct": lever["share_of_scope_pct"],
                "rank": by_key[lever["key"]]["rank"] if lever["key"] in by_key else None,
                "assumptions": "; ".join(f"{k}={_fmt(v)}" for k, v in used.items()),
                # Where each input's default comes from, so the CSV stands on its own.
                "assumption_sources": "; ".join(f"{k}: {SPECS[k].provenance}" for k in used),
                "recommendation": by_key[lever["key"]]["sentence"]
                if lever["key"] in by_key
                else "",
            }
        )
    return rows


def _hidden_period(request: HttpRequest, period: Period) -> list[tuple[str, str]]:
    """The period travels with the calculator's own form (the picker is a separate form)."""
    if period.key != "custom":
        return [("period", period.key)]
    return [("period", "custom")] + [
        (key, request.GET[key]) for key in ("start", "end") if request.GET.get(key)
    ]


def _error_message(errors: dict[str, str]) -> str:
    return " ".join(
        f"{LABELS.get(field, field.capitalize())}: {message}" for field, message in errors.items()
    )


@login_required
def savings(request: HttpRequest) -> HttpResponse:
    inputs = _inputs(request)
    levers, ranked = _compute(inputs)
    if inputs.errors and request.GET.get("download"):
        return HttpResponse(
            _error_message(inputs.errors), status=400, content_type="text/plain; charset=utf-8"
        )
    currency = default_currency()
    context: dict[str, Any] = {
        **_results_context(request, inputs, levers, ranked),
        "scope_value": scope_label(inputs.scope),
        "scope_choices": _scope_choices(inputs.organization),
        "fields": _fields(request, inputs.errors, currency),
        "errors": inputs.errors,
        "error_items": [
            {"field": field, "label": LABELS.get(field, field.capitalize()), "message": message}
            for field, message in inputs.errors.items()
        ],
        "hidden_period": _hidden_period(request, inputs.period),
        "results_url": reverse("savings-results"),
        "figures": {FIGURE_ID: _figure(levers)} if levers else {},
    }
    response = _page(
        request,
        "dashboards/savings.html",
        membership=inputs.membership,
        period=inputs.period,
        error=inputs.period_error,
        tables={"levers": lambda: _lever_rows(levers, ranked)},
        context=context,
    )
    if inputs.errors:
        response.status_code = 400
    return response


def _json(body: dict[str, Any], status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, encoder=DjangoJSONEncoder)


def savings_results(request: HttpRequest) -> JsonResponse:
    """What the calculator's script fetches: the results as rendered HTML (one template for the
    page and for its updates, so both show the same numbers with the same units), the figure,
    and the numbers themselves. Errors use the API's shape."""
    if not request.user.is_authenticated:
        # JSON, not a redirect to the sign-in page: the script says the session has ended.
        return _json(error_body("not_authenticated", "Your session has ended: sign in again."), 401)
    try:
        inputs = _inputs(request)
    except Http404 as exc:
        return _json(error_body("not_found", str(exc)), 404)
    levers, ranked = _compute(inputs)
    if inputs.errors:
        return _json(error_body("invalid", _error_message(inputs.errors), inputs.errors), 400)
    context = _results_context(request, inputs, levers, ranked)
    return _json(
        {
            "scope": scope_label(inputs.scope),
            "start": inputs.period.start,
            "end": inputs.period.end,
            "query": context["state_query"],
            "assumptions": inputs.assumptions.as_dict(),
            "assumption_sources": sources_used(inputs.assumptions),
            "levers": [{k: v for k, v in lever.items() if k != "details"} for lever in levers],
            "recommendations": [
                {k: r[k] for k in ("rank", "key", "energy_kwh", "co2e_kg", "sentence")}
                for r in ranked
            ],
            "figure": _figure(levers),
            "chart": context["chart"],
            "html": render_to_string("dashboards/_savings_results.html", context, request),
        }
    )


@login_required
def top_recommendations(request: HttpRequest) -> HttpResponse:
    """An HTML fragment: the scope's top recommendations with their savings, for the dashboards."""
    inputs = _inputs(request)
    _levers, ranked = _compute(inputs)
    context = {
        "recommendations": ranked[:TOP],
        "more": max(0, len(ranked) - TOP),
        "errors": inputs.errors,
        "error_message": _error_message(inputs.errors),
        "calculator_query": _state_query(request, inputs),
        "scope_name": _scope_name(inputs.scope),
    }
    return render(
        request,
        "dashboards/_recommendations.html",
        context,
        status=400 if inputs.errors else 200,
    )
