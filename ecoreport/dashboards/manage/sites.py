"""Sites: list, create, edit, PUE periods and market-based instruments. Writes go through
the carbon and fleet services, which enqueue the same emissions recompute the API's writes do."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from ecoreport.carbon.instruments import market_instrument_create, market_instrument_delete
from ecoreport.carbon.pue import site_pue_set
from ecoreport.carbon.sites import site_create, site_update
from ecoreport.carbon.validation import CarbonInputError
from ecoreport.dashboards.manage import selectors as sel
from ecoreport.dashboards.manage._common import admin_page, render_page
from ecoreport.dashboards.manage.forms import InstrumentForm, PuePeriodForm, SiteForm, utc_midnight
from ecoreport.fleet.models import Site
from ecoreport.organizations.models import Membership


def _posted(request: HttpRequest) -> Any:
    return request.POST if request.method == "POST" else None


@admin_page
def sites(request: HttpRequest, membership: Membership) -> HttpResponse:
    org = membership.organization
    zones = sel.known_zones(org)
    form = SiteForm(_posted(request), known_zones=zones)
    if form.is_bound and form.is_valid():
        try:
            site = site_create(organization=org, **form.cleaned_data)
        except CarbonInputError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Created site “{site.name}” in zone {site.grid_zone}.")
            return redirect("manage:site", pk=site.pk)
    return render_page(
        request,
        "manage/sites.html",
        membership=membership,
        context={"sites": sel.sites_with_host_counts(org), "form": form, "zones": zones},
    )


def _site_page(
    request: HttpRequest,
    membership: Membership,
    site: Site,
    *,
    form: SiteForm | None = None,
    pue_form: PuePeriodForm | None = None,
    instrument_form: InstrumentForm | None = None,
) -> HttpResponse:
    zones = sel.known_zones(membership.organization)
    if form is None:
        form = SiteForm(
            known_zones=zones,
            site=site,
            initial={
                "name": site.name,
                "grid_zone": site.grid_zone,
                "pue": site.pue,
                "provider": site.provider,
            },
        )
    return render_page(
        request,
        "manage/site.html",
        membership=membership,
        context={
            "site": site,
            "form": form,
            "pue_form": pue_form or PuePeriodForm(),
            "instrument_form": instrument_form or InstrumentForm(),
            "pue_periods": sel.pue_periods_of(site),
            "instruments": sel.instruments_of(site),
            "hosts": sel.hosts_of_site(site),
            "zones": zones,
        },
    )


@admin_page
def site(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    current = sel.site_of(membership.organization, pk)
    if request.method != "POST":
        return _site_page(request, membership, current)
    form = SiteForm(
        request.POST, known_zones=sel.known_zones(membership.organization), site=current
    )
    if form.is_valid():
        try:
            site_update(site=current, **form.cleaned_data)
        except CarbonInputError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Saved site “{current.name}”.")
            return redirect("manage:site", pk=current.pk)
    return _site_page(request, membership, current, form=form)


@require_POST
@admin_page
def site_pue(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    current = sel.site_of(membership.organization, pk)
    form = PuePeriodForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            period = site_pue_set(
                site=current,
                pue=data["pue"],
                valid_from=utc_midnight(data["valid_from"]),
                source=data["source"],
            )
        except CarbonInputError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request,
                f"PUE {period.pue} applies from {period.valid_from:%Y-%m-%d}; "
                "the emissions of those hours are being recomputed.",
            )
            return redirect("manage:site", pk=current.pk)
    return _site_page(request, membership, current, pue_form=form)


@require_POST
@admin_page
def site_instrument_add(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    current = sel.site_of(membership.organization, pk)
    form = InstrumentForm(request.POST)
    if form.is_valid():
        try:
            instrument = market_instrument_create(site=current, **form.service_kwargs())
        except CarbonInputError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request, f"Added {instrument.get_kind_display().lower()} for “{current.name}”."
            )
            return redirect("manage:site", pk=current.pk)
    return _site_page(request, membership, current, instrument_form=form)


@require_POST
@admin_page
def site_instrument_delete(
    request: HttpRequest, membership: Membership, pk: int, instrument_pk: int
) -> HttpResponse:
    current = sel.site_of(membership.organization, pk)
    market_instrument_delete(instrument=sel.instrument_of(current, instrument_pk))
    messages.success(request, "Removed the instrument; its period is being recomputed.")
    return redirect("manage:site", pk=current.pk)
