"""Writes for organizations, teams, projects, memberships and user API tokens."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

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
