"""Agent tokens: list, issue (the raw token is shown once, on the response to the POST), and
revoke."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from ecoreport.dashboards.manage import selectors as sel
from ecoreport.dashboards.manage._common import admin_page, paginate, render_page
from ecoreport.dashboards.manage.forms import AgentTokenForm
from ecoreport.fleet.services import FleetInputError, agent_credential_revoke, host_register
from ecoreport.organizations.models import Membership


@admin_page
def agents(request: HttpRequest, membership: Membership) -> HttpResponse:
    org = membership.organization
    form = AgentTokenForm(
        request.POST if request.method == "POST" else None, sites=sel.sites_of(org)
    )
    if form.is_bound and form.is_valid():
        try:
            host, token = host_register(
                organization=org,
                hostname=form.cleaned_data["hostname"],
                site=form.cleaned_data["site"],
            )
        except FleetInputError as exc:
            form.add_error("hostname", str(exc))
        else:
            # Rendered on the POST's response rather than redirected: a redirect would have to
            # park the raw token in the session (a database row) until the next request. Only
            # its hash is stored; this response is the one place it appears, never cached.
            response = render_page(
                request,
                "manage/agent_token.html",
                membership=membership,
                context={
                    "host": host,
                    "token": token,
                    "server": request.build_absolute_uri("/").rstrip("/"),
                },
            )
            add_never_cache_headers(response)
            return response
    return render_page(
        request,
        "manage/agents.html",
        membership=membership,
        context={
            "page": paginate(request, sel.agent_credentials_of(org)),
            "form": form,
            "hosts": sel.hosts_of(org),
        },
    )


@require_POST
@admin_page
def agent_revoke(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    credential = sel.agent_credential_of(membership.organization, pk)
    agent_credential_revoke(credential=credential)
    messages.success(
        request,
        f"Revoked token {credential.key_prefix}… of {credential.host.hostname}; "
        "its agent is refused from now on.",
    )
    return redirect("manage:agents")
