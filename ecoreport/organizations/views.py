"""Accepting an invitation: the page the e-mailed link opens.

Signed in with the invited address: one button joins. Signed in as someone else: says so. Not
signed in: sign in (and come back), or create an account that gets the invited address. A link
that was used, withdrawn or expired says that, with the same words whatever the reason."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.debug import sensitive_post_parameters

from ecoreport.organizations.services import (
    INVALID_INVITATION,
    InvitationError,
    invitation_accept,
    invitation_accept_new_account,
    invitation_pending,
)


@sensitive_post_parameters("password1", "password2")
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    pending = invitation_pending(token=token)
    context: dict = {"invitation": pending, "error": None, "form": None}
    status = 200
    if pending is None:
        context["error"] = INVALID_INVITATION
        status = 404
    elif request.method == "POST":
        try:
            if request.user.is_authenticated:
                membership = invitation_accept(token=token, user=request.user)
            else:
                form = UserCreationForm(request.POST)
                context["form"] = form
                if not form.is_valid():
                    return _render(request, context, 400)
                membership = invitation_accept_new_account(
                    token=token, user=form.save(commit=False)
                )
                login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
        except InvitationError as exc:
            context["error"] = str(exc)
            return _render(request, context, 400)
        request.session["org"] = membership.organization.slug
        messages.success(
            request, f"You joined {membership.organization.name} as {membership.role}."
        )
        return redirect("overview")
    elif not request.user.is_authenticated:
        context["form"] = UserCreationForm()
    return _render(request, context, status)


def _render(request: HttpRequest, context: dict, status: int) -> HttpResponse:
    response = render(request, "registration/invitation.html", context, status=status)
    add_never_cache_headers(response)  # the page's address is the token
    return response
