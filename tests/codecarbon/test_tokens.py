"""CodeCarbon tokens: issued by the command (the token alone on stdout) or from the settings
page (shown once), hashed, bound to one team, project and site, revocable."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from ecoreport.carbon.sites import site_create
from ecoreport.codecarbon.models import CodeCarbonToken
from tests.codecarbon.conftest import captured
from tests.factories import ProjectFactory, TeamFactory

pytestmark = pytest.mark.django_db


def _post_run(token: str):
    import json

    return Client().post(
        "/api/codecarbon/runs",
        data=json.dumps(captured()[0]["body"]),
        content_type="application/json",
        HTTP_X_API_TOKEN=token,
    )


@pytest.fixture
def paris(cast):
    return site_create(organization=cast.org, slug="paris", name="Paris", grid_zone="FR", pue="1.3")


@pytest.mark.parametrize("exclude_gpu", [False, True])
def test_the_command_prints_the_token_alone(cast, paris, exclude_gpu):
    out = io.StringIO()
    args = ["--org", "acme", "--team", "vision", "--project", "detector", "--site", "paris"]
    call_command(
        "issue_codecarbon_token", *args, *(["--exclude-gpu"] if exclude_gpu else []), stdout=out
    )
    raw = out.getvalue().strip()
    assert out.getvalue() == raw + "\n" and raw.startswith("ecc_") and " " not in raw
    token = CodeCarbonToken.objects.get()
    assert raw not in token.key_hash and raw.startswith(token.key_prefix)
    assert (token.team.slug, token.project.slug, token.site, token.exclude_gpu) == (
        "vision",
        "detector",
        paris,
        exclude_gpu,
    )
    assert token.project.team == token.team  # a new project belongs to the token's team
    answer = _post_run(raw)
    assert answer.status_code == 201
    assert (answer.json()["team"], answer.json()["project"]) == ("vision", "detector")


@pytest.mark.parametrize(
    ("org", "site", "message"),
    [("nobody", "paris", "No organization"), ("acme", "tokyo", "No site 'tokyo'")],
)
def test_the_command_needs_a_known_organization_and_site(cast, paris, org, site, message):
    args = ["--org", org, "--team", "t", "--project", "p", "--site", site]
    with pytest.raises(CommandError, match=message):
        call_command("issue_codecarbon_token", *args, stdout=io.StringIO())
    assert not CodeCarbonToken.objects.exists()


def test_another_organizations_site_cannot_be_used(cast):
    site_create(organization=cast.other_org, slug="osaka", name="Osaka", grid_zone="JP")
    args = ["--org", "acme", "--team", "t", "--project", "p", "--site", "osaka"]
    with pytest.raises(CommandError, match="No site 'osaka' in acme"):
        call_command("issue_codecarbon_token", *args, stdout=io.StringIO())


@pytest.fixture
def owner_client(client, cast):
    client.force_login(cast.owner.user)
    return client


def test_a_token_issued_on_the_settings_page_is_shown_once_works_and_can_be_revoked(
    owner_client, cast, paris
):
    team = TeamFactory(organization=cast.org, slug="nlp")
    project = ProjectFactory(organization=cast.org, slug="llm", team=team)
    response = owner_client.post(
        "/manage/codecarbon/",
        {"team": team.pk, "project": project.pk, "site": paris.pk, "exclude_gpu": "on"},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    raw = page.split('id="codecarbon-token" class="secret" type="text" readonly value="')[1]
    raw = raw.split('"')[0]
    assert raw.startswith("ecc_")
    assert 'api_endpoint="http://testserver/api/codecarbon"' in page
    token = CodeCarbonToken.objects.get()
    assert token.exclude_gpu and (token.team, token.project, token.site) == (team, project, paris)

    listing = owner_client.get("/manage/codecarbon/").content.decode()
    assert token.key_prefix in listing and raw not in listing
    assert _post_run(raw).status_code == 201

    assert owner_client.post(f"/manage/codecarbon/{token.pk}/revoke").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert _post_run(raw).status_code == 401
    assert "revoked" in owner_client.get("/manage/codecarbon/").content.decode()


def test_the_settings_page_offers_only_the_organizations_own_rows(owner_client, cast, paris):
    theirs = site_create(organization=cast.other_org, slug="osaka", name="Osaka", grid_zone="JP")
    team = TeamFactory(organization=cast.org, slug="nlp")
    their_project = ProjectFactory(organization=cast.other_org, slug="secret")
    for field, value in (("site", theirs.pk), ("project", their_project.pk)):
        data = {"team": team.pk, "project": their_project.pk, "site": paris.pk} | {field: value}
        response = owner_client.post("/manage/codecarbon/", data)
        assert response.status_code == 200 and "Not saved" in response.content.decode()
    assert not CodeCarbonToken.objects.exists()


def test_members_and_outsiders_cannot_issue_or_revoke(client, cast, paris):
    team = TeamFactory(organization=cast.org, slug="nlp")
    project = ProjectFactory(organization=cast.org, slug="llm", team=team)
    from ecoreport.codecarbon.services import token_issue

    token, _ = token_issue(team=team, project=project, site=paris)
    client.force_login(cast.member.user)
    assert client.get("/manage/codecarbon/").status_code == 403
    assert client.post(f"/manage/codecarbon/{token.pk}/revoke").status_code == 403
    client.force_login(cast.outsider.user)
    # The outsider's own settings: acme's token is not there to revoke.
    assert client.post(f"/manage/codecarbon/{token.pk}/revoke").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_a_site_or_token_with_tracker_history_is_not_deleted_from_under_it(cast, paris):
    from django.db.models import RestrictedError

    from ecoreport.codecarbon.services import token_issue

    team = TeamFactory(organization=cast.org, slug="nlp")
    project = ProjectFactory(organization=cast.org, slug="llm", team=team)
    token, raw = token_issue(team=team, project=project, site=paris)
    assert _post_run(raw).status_code == 201
    with pytest.raises(RestrictedError):
        paris.delete()
    with pytest.raises(RestrictedError):
        token.delete()
    cast.org.delete()  # the organization takes its sites, tokens and runs with it
    assert not CodeCarbonToken.objects.exists()
