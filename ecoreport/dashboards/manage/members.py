"""Members and their roles, and user API tokens.

Adding someone: an existing account, found by username or email; or, when the admin ticks the
box, a new account with a random temporary password that is shown once (the person changes it
at /accounts/password_change/). The guards (last owner, last admin, own role, who may touch the
owner role) live in ``organizations.services``; these views show their refusals.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from ecoreport.dashboards.manage import selectors as sel
from ecoreport.dashboards.manage._common import admin_page, paginate, render_page
from ecoreport.dashboards.manage.forms import MemberAddForm, RoleForm, role_choices
from ecoreport.organizations.models import Membership, Role
from ecoreport.organizations.services import (
    MembershipError,
    api_token_issue,
    api_token_revoke,
    membership_add,
    membership_add_new_user,
    membership_remove,
    membership_role_change,
)


def _members_page(
    request: HttpRequest, membership: Membership, *, form: MemberAddForm | None = None
) -> HttpResponse:
    is_owner = membership.has_role(Role.OWNER)
    return render_page(
        request,
        "manage/members.html",
        membership=membership,
        context={
            "members": sel.members_of(membership.organization),
            "form": form or MemberAddForm(is_owner=is_owner),
            "roles": role_choices(is_owner=is_owner),
        },
    )


def _add(request: HttpRequest, membership: Membership, form: MemberAddForm) -> HttpResponse:
    data = form.cleaned_data
    wanted = data["user"].strip()
    users = get_user_model().objects.filter(username__iexact=wanted)
    if "@" in wanted and not users.exists():
        users = get_user_model().objects.filter(email__iexact=wanted)
    found = list(users[:2])
    try:
        if len(found) == 1:
            added = membership_add(acting=membership, user=found[0], role=data["role"])
        elif len(found) > 1:
            raise MembershipError(f"Several accounts match {wanted!r}; use the username.")
        elif not data["create_account"]:
            raise MembershipError(
                f"No account matches {wanted!r}. Tick “create one” to make a new account, or "
                "check the spelling."
            )
        else:
            added, password = membership_add_new_user(
                acting=membership, username=wanted, email=data["email"], role=data["role"]
            )
            # Shown once on this response, like a token: nothing keeps it in clear.
            response = render_page(
                request,
                "manage/member_created.html",
                membership=membership,
                context={"added": added, "password": password},
            )
            add_never_cache_headers(response)
            return response
    except MembershipError as exc:
        form.add_error("user", str(exc))
        return _members_page(request, membership, form=form)
    messages.success(request, f"Added {added.user} as {added.role}.")
    return redirect("manage:members")


@admin_page
def members(request: HttpRequest, membership: Membership) -> HttpResponse:
    if request.method != "POST":
        return _members_page(request, membership)
    form = MemberAddForm(request.POST, is_owner=membership.has_role(Role.OWNER))
    if not form.is_valid():
        return _members_page(request, membership, form=form)
    return _add(request, membership, form)


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
