"""Invitations: an admin adding someone by e-mail sends an invitation that the person accepts.
Nobody joins without accepting; the admin's answer is the same whether or not an account uses
the address and never names it; the link is single-use, expiring and stored hashed."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone

from ecoreport.organizations.models import Invitation, Membership, hash_token

pytestmark = pytest.mark.django_db

OSCAR = "oscar@globex.example"
NOBODY = "nobody@nowhere.example"


@pytest.fixture(autouse=True)
def _locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def outsider_email(cast):
    user = cast.outsider.user
    user.email = OSCAR
    user.save()
    return user


@pytest.fixture
def owner_client(cast):
    client = Client()
    client.force_login(cast.owner.user)
    return client


def _invite(owner_client, email, role="member"):
    return owner_client.post("/manage/members/", {"email": email, "role": role}, follow=True)


def _link(message) -> str:
    (path,) = re.findall(r"https?://[^/\s]+(/invitations/[^/\s]+/)", message.body)
    return path


def _members(cast) -> set[str]:
    return set(Membership.objects.for_org(cast.org).values_list("user__username", flat=True))


def test_inviting_an_outsider_does_not_make_them_a_member(cast, owner_client, outsider_email):
    response = _invite(owner_client, OSCAR)
    assert response.status_code == 200
    assert "oscar" not in _members(cast)  # not before accepting
    (message,) = mail.outbox
    assert message.to == [OSCAR]
    assert "Acme AI" in message.subject

    oscar = Client()
    oscar.force_login(cast.outsider.user)
    link = _link(message)
    page = oscar.get(link)
    assert page.status_code == 200 and "Join Acme AI" in page.content.decode()
    assert "oscar" not in _members(cast)  # opening the link is not accepting
    assert oscar.post(link).status_code == 302
    assert Membership.objects.get(organization=cast.org, user=cast.outsider.user).role == "member"
    # Single use: the same link again is refused, and still for globex nothing changed.
    assert oscar.get(link).status_code == 404
    assert Membership.objects.filter(user=cast.outsider.user).count() == 2


def _answer(owner_client, email) -> tuple:
    response = _invite(owner_client, email)
    body = response.content.decode().replace(email, "EMAIL")
    body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", body)
    return response.status_code, response.redirect_chain, body


def test_known_and_unknown_addresses_get_identical_answers(cast, owner_client, outsider_email):
    known = _answer(owner_client, OSCAR)
    unknown = _answer(owner_client, NOBODY)
    # The pending list shows both addresses once both are invited; compare the message alone.
    assert known[:2] == unknown[:2] == (200, [("/manage/members/", 302)])
    pick = lambda body: re.search(r'<p class="msg msg-success"[^>]*>(.*?)</p>', body).group(1)  # noqa: E731
    assert pick(known[2]) == pick(unknown[2])
    assert "oscar" not in known[2]  # never the username
    assert [m.to for m in mail.outbox] == [[OSCAR], [NOBODY]]
    assert mail.outbox[0].body.replace(OSCAR, "E") == mail.outbox[1].body.replace(
        NOBODY, "E"
    ).replace(_link(mail.outbox[1]), _link(mail.outbox[0]))


def test_the_token_is_stored_hashed_and_expires(cast, owner_client, settings):
    settings.INVITATION_EXPIRY_DAYS = 7
    _invite(owner_client, NOBODY)
    token = _link(mail.outbox[0]).split("/")[2]
    invitation = Invitation.objects.get()
    assert invitation.token_hash == hash_token(token)
    assert token not in str(list(Invitation.objects.values()))
    with time_machine.travel(timezone.now() + timedelta(days=7, minutes=1)):
        response = Client().get(f"/invitations/{token}/")
    assert response.status_code == 404
    assert "not valid any more" in response.content.decode()


def test_a_new_person_creates_an_account_and_joins(cast, owner_client):
    _invite(owner_client, NOBODY, role="viewer")
    link = _link(mail.outbox[0])
    newcomer = Client()
    assert "Create account and join" in newcomer.get(link).content.decode()
    response = newcomer.post(
        link,
        {
            "username": "nadia",
            "password1": "a-long-pass-phrase-9",
            "password2": "a-long-pass-phrase-9",
        },
    )
    assert response.status_code == 302
    user = get_user_model().objects.get(username="nadia")
    assert user.email == NOBODY  # the invited address, not one the form could choose
    assert Membership.objects.get(organization=cast.org, user=user).role == "viewer"
    assert newcomer.get("/").status_code == 200  # signed in


def test_someone_signed_in_with_another_address_cannot_accept(cast, owner_client, outsider_email):
    _invite(owner_client, NOBODY)
    oscar = Client()
    oscar.force_login(cast.outsider.user)
    response = oscar.post(_link(mail.outbox[0]))
    assert response.status_code == 400
    assert "another e-mail address" in response.content.decode()
    assert "oscar" not in _members(cast)


def test_pending_invitations_are_listed_and_can_be_withdrawn(cast, owner_client):
    _invite(owner_client, NOBODY)
    page = owner_client.get("/manage/members/").content.decode()
    assert NOBODY in page and "Withdraw" in page
    invitation = Invitation.objects.get()
    owner_client.post(f"/manage/members/invitations/{invitation.pk}/revoke")
    page = owner_client.get("/manage/members/").content.decode()
    assert "Withdrew the invitation" in page and 'id="invitations"' not in page
    assert Client().get(_link(mail.outbox[0])).status_code == 404


def test_a_new_invitation_replaces_the_old_link(cast, owner_client):
    _invite(owner_client, NOBODY)
    _invite(owner_client, NOBODY, role="admin")
    first, second = (_link(m) for m in mail.outbox)
    assert Client().get(first).status_code == 404
    assert Client().get(second).status_code == 200


def test_outsiders_cannot_withdraw_or_see_acme_invitations(cast, owner_client):
    _invite(owner_client, NOBODY)
    invitation = Invitation.objects.get()
    oscar = Client()
    oscar.force_login(cast.outsider.user)
    assert oscar.post(f"/manage/members/invitations/{invitation.pk}/revoke").status_code == 404
    assert NOBODY not in oscar.get("/manage/members/").content.decode()
    assert Invitation.objects.get().revoked_at is None


def test_members_cannot_invite(cast):
    member = Client()
    member.force_login(cast.member.user)
    assert member.post("/manage/members/", {"email": NOBODY, "role": "member"}).status_code == 403
    assert not Invitation.objects.exists() and not mail.outbox


def test_only_owners_invite_owners(cast, owner_client):
    from ecoreport.organizations.services import membership_ensure

    admin = membership_ensure(organization=cast.org, username="ada", role="admin")
    client = Client()
    client.force_login(admin.user)
    response = client.post("/manage/members/", {"email": NOBODY, "role": "owner"})
    assert response.status_code == 200 and not Invitation.objects.exists()
