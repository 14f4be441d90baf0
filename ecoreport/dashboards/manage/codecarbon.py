"""CodeCarbon tokens: list, issue (the raw token is shown once, on the response to the POST,
with the lines to put in a training script), and revoke."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from ecoreport.codecarbon.services import TokenInputError, token_issue, token_revoke
from ecoreport.dashboards.manage import selectors as sel
from ecoreport.dashboards.manage._common import admin_page, paginate, render_page
from ecoreport.dashboards.manage.forms import CodeCarbonTokenForm
from ecoreport.organizations.models import Membership


@admin_page
def codecarbon_tokens(request: HttpRequest, membership: Membership) -> HttpResponse:
    org = membership.organization
    teams, projects = sel.teams_and_projects_of(org)
    form = CodeCarbonTokenForm(
        request.POST if request.method == "POST" else None,
        teams=teams,
        projects=projects,
        sites=sel.sites_of(org),
    )
    if form.is_bound and form.is_valid():
        try:
            token, raw = token_issue(
                team=form.cleaned_data["team"],
                project=form.cleaned_data["project"],
                site=form.cleaned_data["site"],
                exclude_gpu=form.cleaned_data["exclude_gpu"],
            )
        except TokenInputError as exc:
            form.add_error(None, str(exc))
        else:
            # As for agent tokens: shown on the POST's response only, never cached or stored.
            response = render_page(
                request,
                "manage/codecarbon_token.html",
                membership=membership,
                context={
                    "token": token,
                    "raw": raw,
                    "endpoint": request.build_absolute_uri("/api/codecarbon"),
                },
            )
            add_never_cache_headers(response)
            return response
    return render_page(
        request,
        "manage/codecarbon_tokens.html",
        membership=membership,
        context={"page": paginate(request, sel.codecarbon_tokens_of(org)), "form": form},
    )


@require_POST
@admin_page
def codecarbon_token_revoke(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    token = sel.codecarbon_token_of(membership.organization, pk)
    token_revoke(token=token)
    messages.success(
        request,
        f"Revoked CodeCarbon token {token.key_prefix}… of {token.team.slug}/{token.project.slug}; "
        "its trackers are refused from now on.",
    )
    return redirect("manage:codecarbon")
