"""What every settings page shares: who may open it, and the base context of ``base.html``."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ecoreport.dashboards import selectors as sel
from ecoreport.dashboards.views import current_membership
from ecoreport.organizations.models import Membership, Role

PER_PAGE = 50

AdminView = Callable[Concatenate[HttpRequest, Membership, ...], HttpResponse]


def admin_page(view: AdminView) -> Callable[..., HttpResponse]:
    """Anonymous: to the login page. No membership: 404 (``current_membership``). Below admin:
    403. Otherwise the view runs with the membership whose organization every query starts
    from."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = current_membership(request)
        if not membership.has_role(Role.ADMIN):
            raise PermissionDenied("Only organization admins can open settings.")
        return view(request, membership, *args, **kwargs)

    return wrapper


def render_page(
    request: HttpRequest,
    template: str,
    *,
    membership: Membership,
    context: dict[str, Any],
    status: int = 200,
) -> HttpResponse:
    # The same base context as the dashboards' ``_page``, without a period: settings are not
    # about a time range, and base.html hides the period picker when there is none.
    base = {
        "membership": membership,
        "organization": membership.organization,
        "is_admin": membership.has_role(Role.ADMIN),
        "is_owner": membership.has_role(Role.OWNER),
        "period": None,
        "query": "",
        "teams_nav": sel.teams_of(membership.organization),
    }
    return render(request, template, {**base, **context}, status=status)


def paginate(request: HttpRequest, qs: QuerySet[Any], per_page: int = PER_PAGE) -> Page:
    return Paginator(qs, per_page).get_page(request.GET.get("page"))
