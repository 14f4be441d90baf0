"""Carbon-intensity factors: what the organization can use per zone, its own factors (one at a
time or a CSV through the importer), and removing its own. Shared factors (built-in, imported
from the command line, live providers) are read-only here."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from ecoreport.carbon.factors import factor_create, factor_delete, factors_import_csv
from ecoreport.carbon.validation import CarbonInputError
from ecoreport.dashboards.manage import selectors as sel
from ecoreport.dashboards.manage._common import admin_page, paginate, render_page
from ecoreport.dashboards.manage.forms import FactorForm, FactorImportForm
from ecoreport.organizations.models import Membership

MAX_ERRORS_SHOWN = 200


def _factors_page(
    request: HttpRequest,
    membership: Membership,
    *,
    form: FactorForm | None = None,
    import_form: FactorImportForm | None = None,
    import_errors: list[tuple[int, str]] | None = None,
) -> HttpResponse:
    org = membership.organization
    zone = request.GET.get("zone", "").strip()
    context: dict[str, Any] = {
        "zone_rows": sel.factor_zones(org),
        "zone": zone,
        "form": form or FactorForm(initial={"zone": zone} if zone else None),
        "import_form": import_form or FactorImportForm(),
        "import_errors": (import_errors or [])[:MAX_ERRORS_SHOWN],
        "import_errors_more": max(0, len(import_errors or []) - MAX_ERRORS_SHOWN),
        "zones": sel.known_zones(org),
    }
    if zone:
        context["page"] = paginate(request, sel.factors_of_zone(org, zone))
    return render_page(request, "manage/factors.html", membership=membership, context=context)


@admin_page
def factors(request: HttpRequest, membership: Membership) -> HttpResponse:
    if request.method != "POST":
        return _factors_page(request, membership)
    form = FactorForm(request.POST)
    if form.is_valid():
        try:
            factor = factor_create(organization=membership.organization, data=form.record())
        except CarbonInputError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request,
                f"Added {factor.intensity_g_per_kwh:g} g/kWh for {factor.zone} "
                f"({factor.get_resolution_display().lower()} from {factor.start:%Y-%m-%d %H:%M} "
                "UTC); the hours it applies to are being recomputed.",
            )
            return redirect(f"{reverse('manage:factors')}?zone={factor.zone}")
    return _factors_page(request, membership, form=form)


@require_POST
@admin_page
def factors_import(request: HttpRequest, membership: Membership) -> HttpResponse:
    form = FactorImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return _factors_page(request, membership, import_form=form)
    data = form.cleaned_data
    result = factors_import_csv(
        text=data["file"],
        replace=data["replace"],
        skip_bad=data["skip_bad"],
        organization=membership.organization,
    )
    loaded = f"{result.created} new and {result.replaced} replaced factors"
    if result.errors:
        if data["skip_bad"]:
            messages.success(request, f"Imported {loaded}; the lines below were skipped.")
        else:
            messages.error(request, "Nothing was imported: fix the lines below and upload again.")
        # Rendered, not redirected: the per-line errors are the page's content.
        return _factors_page(request, membership, import_form=form, import_errors=result.errors)
    messages.success(request, f"Imported {loaded}; the hours they apply to are being recomputed.")
    return redirect("manage:factors")


@require_POST
@admin_page
def factor_remove(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    factor = sel.own_factor_of(membership.organization, pk)
    zone = factor.zone
    # factor_delete enqueues the recompute before it deletes; inside a transaction the task
    # runs on commit, after the delete, instead of seeing the factor still there.
    with transaction.atomic():
        factor_delete(factor=factor)
    messages.success(request, f"Removed the factor; the hours of {zone} are being recomputed.")
    return redirect(f"{reverse('manage:factors')}?zone={zone}")
