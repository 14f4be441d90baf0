"""Sign-in rate limiting: after the configured number of failures a username, and an address,
are locked out with a clear message, even for the right password; others are not; API tokens
are not affected; an administrator can lift the lockout."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db

RIGHT = "the-right-password-1"


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    # Each sign-in hashes a password; the real hasher's cost is the point in production and only
    # slows these dozens of sign-ins down.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(cast, fast_hashing):
    for membership in (cast.owner, cast.member):
        membership.user.set_password(RIGHT)
        membership.user.save()
    return cast


def _sign_in(username: str, password: str, address: str = "198.51.100.7"):
    return Client(REMOTE_ADDR=address).post(
        "/accounts/login/", {"username": username, "password": password}
    )


def _fail(username: str, times: int, address: str = "198.51.100.7") -> None:
    for _ in range(times):
        response = _sign_in(username, "wrong", address)
        assert response.status_code in (200, 429)


def test_repeated_failures_lock_the_account_even_for_the_right_password(people, settings):
    settings.AXES_FAILURE_LIMIT = 10
    _fail("mo", 10)
    response = _sign_in("mo", RIGHT)
    assert response.status_code == 429
    assert "_auth_user_id" not in response.client.session
    assert "Too many failed sign-ins" in response.content.decode()
    assert "15 minutes" in response.content.decode()
    # Another address does not help: the username itself is locked.
    assert _sign_in("mo", RIGHT, address="203.0.113.50").status_code == 429


def test_failures_below_the_limit_do_not_lock(people, settings):
    settings.AXES_FAILURE_LIMIT = 10
    _fail("mo", 9)
    response = _sign_in("mo", RIGHT)
    assert response.status_code == 302  # signed in
    # Success resets the count: nine more failures still do not lock.
    _fail("mo", 9)
    assert _sign_in("mo", RIGHT).status_code == 302


def test_another_user_from_another_address_is_unaffected(people, settings):
    settings.AXES_FAILURE_LIMIT = 5
    _fail("mo", 5, address="198.51.100.7")
    assert _sign_in("olivia", RIGHT, address="203.0.113.50").status_code == 302


def test_an_address_that_guesses_many_usernames_is_locked(people, settings):
    settings.AXES_FAILURE_LIMIT = 5
    for name in ("a", "b", "c", "d", "e"):
        _fail(name, 1, address="198.51.100.66")
    assert _sign_in("olivia", RIGHT, address="198.51.100.66").status_code == 429
    assert _sign_in("olivia", RIGHT, address="203.0.113.50").status_code == 302


def test_lockout_by_username_only_leaves_the_address_free(people, settings):
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_LOCKOUT_PARAMETERS = ["username"]
    _fail("mo", 5, address="198.51.100.7")
    assert _sign_in("mo", RIGHT, address="198.51.100.7").status_code == 429
    assert _sign_in("olivia", RIGHT, address="198.51.100.7").status_code == 302


def test_api_tokens_work_while_the_user_is_locked_out(people, settings, client):
    settings.AXES_FAILURE_LIMIT = 3
    _fail("mo", 3)
    response = client.get("/api/v1/targets", HTTP_AUTHORIZATION=f"Bearer {people.member_token}")
    assert response.status_code == 200


def test_an_administrator_lifts_the_lockout(people, settings):
    settings.AXES_FAILURE_LIMIT = 3
    _fail("mo", 3)
    assert _sign_in("mo", RIGHT).status_code == 429
    call_command("axes_reset_username", "mo", stdout=StringIO())
    call_command("axes_reset_ip", "198.51.100.7", stdout=StringIO())
    assert _sign_in("mo", RIGHT).status_code == 302


def test_behind_a_trusted_proxy_the_forwarded_address_counts(people, settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_LOCKOUT_PARAMETERS = ["ip_address"]
    settings.LOGIN_TRUSTED_PROXY_COUNT = 1

    def via_proxy(username, password, client_address, spoofed=""):
        forwarded = f"{spoofed}, {client_address}" if spoofed else client_address
        return Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded).post(
            "/accounts/login/", {"username": username, "password": password}
        )

    for _ in range(3):
        via_proxy("x", "wrong", "198.51.100.7", spoofed="1.1.1.1")
    # The proxy's own address is not locked (everyone comes through it), the client's is,
    # whatever the client wrote into the header itself.
    assert via_proxy("olivia", RIGHT, "203.0.113.50").status_code == 302
    assert via_proxy("olivia", RIGHT, "198.51.100.7", spoofed="9.9.9.9").status_code == 429
