"""Issue 12: labels in any script, or with invisible characters, are kept distinct and shown by
their name, not by their slug, from the ingest to the pages, the usage API and the reports.

The labels come in over HTTP as an agent sends them; everything after that is the production
path (rollup, selectors, templates, report build)."""

from __future__ import annotations

import csv
import html
import io
from datetime import UTC, datetime, timedelta

import pytest

from ecoreport.core.periods import parse_period
from ecoreport.organizations.models import Project, Team
from ecoreport.reports import services as reports
from ecoreport.reports.models import ReportFile
from tests.conftest import make_batch, make_sample
from tests.reports.conftest import Q3_END, Q3_START

pytestmark = pytest.mark.django_db

# Label as sent -> the name its team and project are shown under.
SHOWN = {
    "研究チーム": "研究チーム",
    "Équipe": "Équipe",
    "Èquipe": "Èquipe",
    "nlp": "nlp",
    "nlp\u200b": "nlp\u27e8U+200B\u27e9",
}


@pytest.fixture
def after_q3():
    import time_machine

    with time_machine.travel(datetime(2026, 10, 20, 12, 0, tzinfo=UTC), tick=False) as traveller:
        yield traveller


@pytest.fixture
def labelled(cast, agent, post_batch, after_q3):
    start = datetime(2026, 8, 3, 10, 0, tzinfo=UTC)
    samples = [
        make_sample(
            start=start + timedelta(minutes=i),
            seconds=60,
            energy_j=10_000.0 + 1_000.0 * i,  # distinct energies: a fixed ranking
            attribution=[{"share": 1.0, "team": label, "project": label}],
        )
        for i, label in enumerate(SHOWN)
    ]
    response = post_batch(agent.token, make_batch(samples))
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == len(SHOWN)
    return cast


def _slugs(model):
    return {name: slug for slug, name in model.objects.values_list("slug", "name")}


def test_every_label_is_a_team_and_project_of_its_own_named_as_shown(labelled):
    for model in (Team, Project):
        slugs = _slugs(model)
        assert set(slugs) == set(SHOWN.values()), model
        assert len(set(slugs.values())) == len(SHOWN)
        assert slugs["nlp"] == "nlp"  # a plain label keeps its readable slug
        assert slugs["nlp\u27e8U+200B\u27e9"] != "nlp"


def _login(client, cast):
    client.force_login(cast.member.user)
    return client


def _legend(figure):
    return {trace["name"] for trace in figure["data"]}


def test_overview_shows_teams_by_name_in_the_table_and_the_charts(client, labelled):
    response = _login(client, labelled).get("/?period=90d")
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    slugs = _slugs(Team)
    for name in SHOWN.values():
        # The link goes to the slug; what it says is the name.
        assert f'<a href="/teams/{slugs[name]}/?period=90d">{name}</a>' in page, name
    for key in ("energy-by-team", "emissions-by-team"):
        assert _legend(response.context["figures"][key]) == set(SHOWN.values())
    hover = [t["hovertemplate"] for t in response.context["figures"]["energy-by-team"]["data"]]
    assert any("nlp\u27e8U+200B\u27e9: " in h for h in hover)
    assert not any(slugs["研究チーム"] in h for h in hover)
    # The CSV download names the team beside its slug.
    rows = list(
        csv.DictReader(io.StringIO(client.get("/?period=90d&download=teams").content.decode()))
    )
    assert {(r["team"], r["team_name"]) for r in rows} == {(s, n) for n, s in slugs.items()}


@pytest.mark.parametrize("label", list(SHOWN))
def test_team_page_is_headed_by_the_name_and_lists_projects_by_name(client, labelled, label):
    team = Team.objects.get(name=SHOWN[label])
    response = _login(client, labelled).get(f"/teams/{team.slug}/?period=90d")
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert f"<h1>Team: {SHOWN[label]}</h1>" in page
    project = Project.objects.get(name=SHOWN[label])
    assert f'<a href="/projects/{project.slug}/?period=90d">{SHOWN[label]}</a>' in page
    assert _legend(response.context["figures"]["energy-over-time"]) == {SHOWN[label]}


def test_two_teams_never_look_alike_on_a_page(client, labelled):
    page = html.unescape(_login(client, labelled).get("/?period=90d").content.decode())
    rows = [line for line in page.splitlines() if '<th scope="row"><a href="/teams/' in line]
    names = [line.split('">', 2)[2].split("</a>")[0] for line in rows]
    assert sorted(names) == sorted(SHOWN.values())
    assert len({n.replace("\u200b", "") for n in names}) == len(SHOWN)


def test_usage_api_gives_the_name_beside_the_slug(labelled, get_usage):
    response = get_usage(
        labelled.member_token,
        start=Q3_START.isoformat(),
        end=Q3_END.isoformat(),
        group_by="team,project",
    )
    assert response.status_code == 200, response.content
    rows = response.json()["rows"]
    teams, projects = _slugs(Team), _slugs(Project)
    assert {(r["team"], r["team_name"], r["project"], r["project_name"]) for r in rows} == {
        (teams[n], n, projects[n], n) for n in SHOWN.values()
    }
    # Grouped by host only, no names are added.
    by_host = get_usage(
        labelled.member_token, start=Q3_START.isoformat(), end=Q3_END.isoformat(), group_by="host"
    ).json()["rows"]
    assert "team_name" not in by_host[0] and "host" in by_host[0]


def test_usage_api_names_fall_back_to_the_slug_and_stay_none_for_unattributed(
    cast, agent, post_batch, get_usage, after_q3
):
    Team.objects.create(organization=cast.org, slug="ops")  # a team a person made, no name
    start = datetime(2026, 8, 3, 10, 0, tzinfo=UTC)
    samples = [
        make_sample(start=start, seconds=60, attribution=[{"share": 1.0, "team": "ops"}]),
        make_sample(start=start + timedelta(minutes=1), seconds=60),  # idle: no team
    ]
    assert post_batch(agent.token, make_batch(samples)).json()["accepted"] == 2
    rows = get_usage(
        cast.member_token, start=Q3_START.isoformat(), end=Q3_END.isoformat(), group_by="team"
    ).json()["rows"]
    assert sorted((r["team"] or "", r["team_name"] or "") for r in rows) == [
        ("", ""),
        ("ops", "ops"),
    ]


def test_usage_schema_documents_the_names(client):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    row = schema["components"]["schemas"]["UsageRow"]["properties"]
    assert {"team", "team_name", "project", "project_name"} <= row.keys()
    assert row["team_name"]["nullable"] is True


def test_report_tables_name_teams_and_projects(labelled):
    report = reports.report_generate(organization=labelled.org, period=parse_period("2026-Q3"))
    data = bytes(ReportFile.objects.get(report=report, format="csv").content).decode()
    rows = list(csv.DictReader(io.StringIO(data)))
    for table in ("by_team", "by_project"):
        assert {r["row"] for r in rows if r["table"] == table} == set(SHOWN.values()), table
    page = html.unescape(
        bytes(ReportFile.objects.get(report=report, format="html").content).decode()
    )
    for name in SHOWN.values():
        assert f">{name}<" in page, name
    assert _slugs(Team)["研究チーム"] not in page
