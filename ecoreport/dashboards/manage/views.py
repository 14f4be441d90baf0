"""The settings index: one link per section, with what each holds."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from ecoreport.dashboards.manage import selectors as sel
from ecoreport.dashboards.manage._common import admin_page, render_page
from ecoreport.organizations.models import Membership


@admin_page
def index(request: HttpRequest, membership: Membership) -> HttpResponse:
    return render_page(
        request,
        "manage/index.html",
        membership=membership,
        context={"counts": sel.settings_counts(membership.organization)},
    )
