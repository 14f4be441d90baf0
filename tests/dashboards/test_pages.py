"""Every page for the owner, the member and the outsider; query counts pinned."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import make_batch, make_sample

pytestmark = pytest.mark.django_db

PAGES = ["/", "/teams/nlp/", "/projects/llm/", "/fleet/"]


@pytest.fixture
def measured(cast, agent, post_batch):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    samples = [
        make_sample(
            start=start + timedelta(minutes=10 * i),
            seconds=600,
            energy_j=600 * 300.0,
            attribution=[{"share": 1.0, "team": "nlp", "project": "llm"}] if i % 3 else [],
        )
        for i in range(24)
    ]
    assert post_batch(agent.token, make_batch(samples)).json()["accepted"] == 24
    return cast


def _login(client, membership):
    client.force_login(membership.user)
    return client


@pytest.mark.parametrize("path", PAGES)
def test_members_see_the_pages(client, measured, path):
    for membership in (measured.owner, measured.member):
        response = _login(client, membership).get(path)
        assert response.status_code == 200, path
        assert b"Acme AI" in response.content


@pytest.mark.parametrize("path", PAGES)
def test_outsider_sees_nothing_of_acme(client, measured, path):
    response = _login(client, measured.outsider).get(path)
    # The outsider acts in their own organization: no Acme names, no Acme numbers.
    assert b"Acme AI" not in response.content
    assert b"nlp" not in response.content or response.status_code == 404
    if path != "/" and path != "/fleet/":
        assert response.status_code == 404


def test_outsider_cannot_switch_into_acme(client, measured):
    response = _login(client, measured.outsider).get("/?org=acme")
    assert b"Acme AI" not in response.content


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_is_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_overview_shows_the_measured_energy(client, measured):
    response = _login(client, measured.member).get("/?period=7d")
    headline = response.context["headline"]["current"]
    assert headline["energy_kwh"] == pytest.approx(24 * 600 * 300.0 / 3.6e6)
    assert headline["idle_energy_share_pct"] == pytest.approx(100 * 8 / 24)
    assert [r["team"] for r in response.context["teams"]] == ["nlp", None]


def test_team_table_downloads_as_csv(client, measured):
    response = _login(client, measured.member).get("/teams/nlp/?download=breakdown")
    assert response["Content-Type"].startswith("text/csv")
    lines = response.content.decode().splitlines()
    assert lines[0].startswith("project,energy_kwh")
    assert lines[1].startswith("llm,")


def test_unknown_table_is_404(client, measured):
    assert _login(client, measured.member).get("/?download=secrets").status_code == 404


@pytest.mark.parametrize(
    ("path", "max_queries"),
    # One query each for the charts' fixed team/project/site colours (creation order); the
    # fleet page's one more: GPUs two hosts report.
    [("/", 9), ("/teams/nlp/", 13), ("/projects/llm/", 12), ("/fleet/", 11)],
)
def test_dashboard_query_counts_are_pinned(
    client, measured, django_assert_max_num_queries, path, max_queries
):
    from django.db import connection

    _login(client, measured.member)
    client.get(path)  # the first page of a session stores the chosen organization in it
    if connection.vendor == "postgresql" and path != "/" and path != "/fleet/":
        max_queries += 3  # the jobs query's savepoint, SET LOCAL work_mem and release
    with django_assert_max_num_queries(max_queries):
        client.get(path)


def test_bad_period_is_explained_and_falls_back(client, measured):
    response = _login(client, measured.member).get("/?period=custom&start=2026-02-30&end=x")
    assert response.status_code == 200
    assert b"YYYY-MM-DD" in response.content


def test_plotly_is_served_by_the_app(client):
    response = client.get("/static/vendor/plotly/plotly.min.js")
    assert response.status_code == 200
