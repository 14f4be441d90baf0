"""Writes for organizations, teams, projects, memberships and user API tokens."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ecoreport.organizations.authentication import USER_TOKEN_PREFIX
from ecoreport.organizations.models import (
    ApiToken,
    Membership,
    Organization,
    Role,
    hash_token,
    new_token,
)


def organization_create(*, slug: str, name: str) -> Organization:
    org = Organization(slug=slug, name=name)
    org.full_clean()
    org.save()
    return org


@transaction.atomic
def membership_ensure(*, organization: Organization, username: str, role: str) -> Membership:
    """The user's membership with at least ``role``; creates the user (without a usable
    password) and the membership when needed. An existing higher role is kept."""
    user_model = get_user_model()
    user: AbstractBaseUser
    user, created = user_model.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    membership, _ = Membership.objects.get_or_create(
        organization=organization, user=user, defaults={"role": role}
    )
    if not membership.has_role(role):
        membership.role = Role(role)
        membership.save(update_fields=["role"])
    return membership


def api_token_issue(*, membership: Membership) -> str:
    """A new token for the membership; only its hash is stored, so this is the one chance to
    see it."""
    token = new_token(USER_TOKEN_PREFIX)
    ApiToken.objects.create(
        membership=membership, key_hash=hash_token(token), key_prefix=token[:10]
    )
    return token


# --- members and tokens, as the settings pages change them ---------------------------------------


class MembershipError(ValueError):
    """A membership change refused for a reason an admin can act on; the message says which."""


_ADMIN_ROLES = (Role.ADMIN, Role.OWNER)


def _check_may_change(*, acting: Membership, target: Membership | None, role: str | None) -> None:
    if not acting.has_role(Role.ADMIN):
        raise MembershipError("Only organization admins can change members.")
    if target is not None and target.organization_id != acting.organization_id:
        # Callers look members up in the acting organization; this is the backstop.
        raise MembershipError("That person is not a member of this organization.")
    # Admins manage everyone below owner; only an owner can make or unmake an owner.
    touches_owner = role == Role.OWNER or (target is not None and target.role == Role.OWNER)
    if touches_owner and not acting.has_role(Role.OWNER):
        raise MembershipError("Only an owner can grant, change or remove the owner role.")


def _check_still_administered(
    *, organization: Organization, target: Membership, role: str | None
) -> None:
    """Refuse a change (``role`` None: removal) that would leave the organization without an
    owner (when it has one) or without anyone who can administer it."""
    # Lock the admin and owner rows: two admins demoting each other at the same moment must not
    # each see the other one still in place.
    roles = dict(
        Membership.objects.select_for_update()
        .filter(organization=organization, role__in=_ADMIN_ROLES)
        .values_list("pk", "role")
    )
    owners_before = sum(r == Role.OWNER for r in roles.values())
    if role in _ADMIN_ROLES:
        roles[target.pk] = role
    else:
        roles.pop(target.pk, None)
    if owners_before and not any(r == Role.OWNER for r in roles.values()):
        raise MembershipError(f"{target.user} is the last owner; make someone else an owner first.")
    if not roles:
        raise MembershipError(f"{target.user} is the last admin; make someone else an admin first.")


@transaction.atomic
def membership_add(*, acting: Membership, user: AbstractBaseUser, role: str) -> Membership:
    """Adds an existing user to the acting admin's organization."""
    role = Role(role)
    _check_may_change(acting=acting, target=None, role=role)
    organization = acting.organization
    if Membership.objects.filter(organization=organization, user=user).exists():
        raise MembershipError(f"{user} is already a member; change their role in the list.")
    return Membership.objects.create(organization=organization, user=user, role=role)


@transaction.atomic
def membership_add_new_user(
    *, acting: Membership, username: str, email: str, role: str
) -> tuple[Membership, str]:
    """Creates a user with a random temporary password and adds them; returns the membership
    and the password, which is not stored anywhere in clear: this is the one chance to see it."""
    role = Role(role)
    _check_may_change(acting=acting, target=None, role=role)
    user_model = get_user_model()
    if user_model.objects.filter(username__iexact=username).exists():
        raise MembershipError(f"A user {username!r} already exists; add them without creating one.")
    password = secrets.token_urlsafe(12)
    user = user_model(username=username, email=email)
    user.set_password(password)
    try:
        user.full_clean()
    except ValidationError as exc:
        raise MembershipError(" ".join(exc.messages)) from None
    user.save()
    membership = Membership.objects.create(organization=acting.organization, user=user, role=role)
    return membership, password


@transaction.atomic
def membership_role_change(*, acting: Membership, membership: Membership, role: str) -> Membership:
    role = Role(role)
    _check_may_change(acting=acting, target=membership, role=role)
    if membership.pk == acting.pk and role not in _ADMIN_ROLES:
        raise MembershipError(
            "You cannot take away your own admin role; ask another admin to do it."
        )
    if membership.role == role:
        return membership
    if membership.role in _ADMIN_ROLES:  # a promotion cannot leave anyone without an admin
        _check_still_administered(organization=acting.organization, target=membership, role=role)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, acting: Membership, membership: Membership) -> None:
    """Removes the member; their API tokens go with the membership (cascade)."""
    _check_may_change(acting=acting, target=membership, role=None)
    if membership.pk == acting.pk:
        raise MembershipError("You cannot remove yourself; ask another admin to do it.")
    if membership.role in _ADMIN_ROLES:
        _check_still_administered(organization=acting.organization, target=membership, role=None)
    membership.delete()


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
