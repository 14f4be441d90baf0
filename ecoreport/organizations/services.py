"""Writes for organizations, teams, projects, memberships and user API tokens."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from ecoreport.core.errors import DomainError
from ecoreport.organizations.authentication import USER_TOKEN_PREFIX
from ecoreport.organizations.models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    Role,
    hash_token,
    new_token,
)

log = logging.getLogger(__name__)

INVITATION_TOKEN_PREFIX = "eri"


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


class MembershipError(DomainError):
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


# --- invitations ----------------------------------------------------------------------------------


class InvitationError(DomainError):
    """An invitation that cannot be accepted as asked; the message tells the invitee why."""


INVALID_INVITATION = (
    "This invitation link is not valid any more: it was used, withdrawn or has expired. "
    "Ask an admin of the organization for a new one."
)


def _normalized_email(email: str) -> str:
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise MembershipError(f"{email!r} is not an e-mail address.") from None
    return email


def invitation_create(
    *, acting: Membership, email: str, role: str, link_base: str, now: datetime | None = None
) -> Invitation:
    """Invites ``email`` to the acting admin's organization and mails the link.

    The answer is the same whether an account uses the address or not, and nothing is added to
    the organization until the invitee accepts. A new invitation to the same address replaces
    a pending one (its link stops working)."""
    role = Role(role)
    _check_may_change(acting=acting, target=None, role=role)
    email = _normalized_email(email)
    organization = acting.organization
    # Only about this organization's own members, whom the admin sees listed with their e-mail.
    if Membership.objects.for_org(organization).filter(user__email__iexact=email).exists():
        raise MembershipError(f"A member already uses {email}; change their role in the list.")
    now = now or timezone.now()
    token = new_token(INVITATION_TOKEN_PREFIX)
    days = settings.INVITATION_EXPIRY_DAYS
    with transaction.atomic():
        Invitation.objects.for_org(organization).filter(
            email=email, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=now)
        invitation = Invitation.objects.create(
            organization=organization,
            email=email,
            role=role,
            token_hash=hash_token(token),
            invited_by=acting.user,
            created_at=now,
            expires_at=now + timedelta(days=days),
        )
        link = f"{link_base.rstrip('/')}/invitations/{token}/"
        try:
            send_mail(
                subject=f"You are invited to {organization.name} on EcoReport",
                message=(
                    f"{acting.user} invites you to join {organization.name} on EcoReport as "
                    f"{role.label.lower()}.\n\nTo accept, open this link (it works once, for "
                    f"{days} days):\n{link}\n\nSign in with the account that uses this "
                    "address, or create one there. If you did not expect this, ignore it."
                ),
                from_email=settings.DEFAULT_FROM_EMAIL,
                recipient_list=[email],
            )
        except Exception as exc:  # the mail backend's failure: keep no link nobody received
            log.warning(
                "invitation.mail_failed org=%s error=%s", organization.slug, type(exc).__name__
            )
            raise MembershipError(
                "The invitation e-mail could not be sent; try again later."
            ) from exc
    log.info(
        "invitation.created org=%s invitation_id=%s role=%s", organization.slug, invitation.pk, role
    )
    return invitation


def invitation_revoke(*, acting: Membership, invitation: Invitation) -> None:
    _check_may_change(acting=acting, target=None, role=invitation.role)
    if invitation.organization_id != acting.organization_id:
        raise MembershipError("That invitation is not from this organization.")
    Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def invitation_pending(*, token: str, for_update: bool = False) -> Invitation | None:
    """The pending, unexpired invitation this token opens, if any."""
    invitations = Invitation.objects.select_related("organization")
    if for_update:
        invitations = invitations.select_for_update(of=("self",))
    return invitations.filter(
        token_hash=hash_token(token),
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).first()


def _accept(invitation: Invitation, user: AbstractBaseUser) -> Membership:
    now = timezone.now()
    membership, _ = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    Invitation.objects.filter(pk=invitation.pk).update(accepted_at=now, accepted_by=user)
    # Other pending invitations of the same address to this organization are now moot.
    Invitation.objects.for_org(invitation.organization_id).filter(
        email=invitation.email, accepted_at__isnull=True, revoked_at__isnull=True
    ).exclude(pk=invitation.pk).update(revoked_at=now)
    log.info(
        "invitation.accepted org=%s invitation_id=%s user_id=%s",
        invitation.organization.slug,
        invitation.pk,
        user.pk,
    )
    return membership


@transaction.atomic
def invitation_accept(*, token: str, user: AbstractBaseUser) -> Membership:
    """The signed-in ``user`` accepts: their account's e-mail must be the invited address."""
    invitation = invitation_pending(token=token, for_update=True)
    if invitation is None:
        raise InvitationError(INVALID_INVITATION)
    if (getattr(user, "email", "") or "").strip().lower() != invitation.email:
        raise InvitationError(
            "This invitation is for another e-mail address than your account's. Sign in with "
            "the account that uses it, or sign out and create an account with this link."
        )
    return _accept(invitation, user)


@transaction.atomic
def invitation_accept_new_account(*, token: str, user: AbstractBaseUser) -> Membership:
    """Saves ``user`` (a new, validated account, not yet saved) with the invited address and
    accepts for it."""
    invitation = invitation_pending(token=token, for_update=True)
    if invitation is None:
        raise InvitationError(INVALID_INVITATION)
    if get_user_model().objects.filter(email__iexact=invitation.email).exists():
        # Only the holder of the mailbox has the link, so this tells nobody else anything.
        raise InvitationError("An account already uses this e-mail address: sign in to accept.")
    user.email = invitation.email  # type: ignore[attr-defined]
    user.save()
    return _accept(invitation, user)
