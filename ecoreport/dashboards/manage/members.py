"""Members and their roles, invitations, and user API tokens.

Adding someone is an invitation by e-mail that the person accepts (``organizations.views``):
nobody is added without consent, and the admin's answer is the same whether or not an account
uses the address, so the page cannot be used to find out who has an account. The guards (last
owner, last admin, own role, who may touch the owner role) live in ``organizations.services``;
these views show their refusals.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from ecoreport.dashboards.manage import selectors as sel
from ecoreport.dashboards.manage._common import admin_page, paginate, render_page
from ecoreport.dashboards.manage.forms import InviteForm, RoleForm, role_choices
from ecoreport.organizations.models import Membership, Role
from ecoreport.organizations.services import (
    MembershipError,
    api_token_issue,
    api_token_revoke,
    invitation_create,
    invitation_revoke,
    membership_remove,
    membership_role_change,
)


def _members_page(
    request: HttpRequest, membership: Membership, *, form: InviteForm | None = None
) -> HttpResponse:
    is_owner = membership.has_role(Role.OWNER)
    return render_page(
        request,
        "manage/members.html",
        membership=membership,
        context={
            "members": sel.members_of(membership.organization),
            "invitations": sel.invitations_pending(membership.organization),
            "form": form or InviteForm(is_owner=is_owner),
            "roles": role_choices(is_owner=is_owner),
        },
    )


@admin_page
def members(request: HttpRequest, membership: Membership) -> HttpResponse:
    if request.method != "POST":
        return _members_page(request, membership)
    form = InviteForm(request.POST, is_owner=membership.has_role(Role.OWNER))
    if not form.is_valid():
        return _members_page(request, membership, form=form)
    try:
        invitation = invitation_create(
            acting=membership,
            email=form.cleaned_data["email"],
            role=form.cleaned_data["role"],
            link_base=request.build_absolute_uri("/"),
        )
    except MembershipError as exc:
        form.add_error("email", str(exc))
        return _members_page(request, membership, form=form)
    messages.success(
        request,
        f"Invitation sent to {invitation.email} as {invitation.role}. They join when they "
        f"accept it; the link expires on {invitation.expires_at:%Y-%m-%d}.",
    )
    return redirect("manage:members")


@require_POST
@admin_page
def invitation_remove(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    invitation = sel.invitation_of(membership.organization, pk)
    try:
        invitation_revoke(acting=membership, invitation=invitation)
    except MembershipError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Withdrew the invitation to {invitation.email}.")
    return redirect("manage:members")


@require_POST
@admin_page
def member_role(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    target = sel.member_of(membership.organization, pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"{request.POST.get('role')!r} is not a role.")
        return redirect("manage:members")
    try:
        membership_role_change(acting=membership, membership=target, role=form.cleaned_data["role"])
    except MembershipError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{target.user} is now {target.role}.")
    return redirect("manage:members")


@require_POST
@admin_page
def member_remove(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    target = sel.member_of(membership.organization, pk)
    try:
        membership_remove(acting=membership, membership=target)
    except MembershipError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Removed {target.user} from {membership.organization.name}; "
            "their API tokens for it no longer work.",
        )
    return redirect("manage:members")


@admin_page
def api_tokens(request: HttpRequest, membership: Membership) -> HttpResponse:
    if request.method == "POST":
        # Only for oneself: a token acts with its owner's role, so an admin minting tokens for
        # others would be acting as them.
        token = api_token_issue(membership=membership)
        response = render_page(
            request,
            "manage/api_token.html",
            membership=membership,
            context={
                "token": token,
                "server": request.build_absolute_uri("/").rstrip("/"),
            },
        )
        add_never_cache_headers(response)
        return response
    return render_page(
        request,
        "manage/api_tokens.html",
        membership=membership,
        context={"page": paginate(request, sel.api_tokens_of(membership.organization))},
    )


@require_POST
@admin_page
def api_token_remove(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    token = sel.api_token_of(membership.organization, pk)
    api_token_revoke(token=token)
    messages.success(request, f"Revoked API token {token.key_prefix}… of {token.membership.user}.")
    return redirect("manage:api-tokens")
