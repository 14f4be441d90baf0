"""The targets page: everyone in the organization sees targets and their status; admins create
and edit them through the same validation as the API; others cannot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.html import escape

from ecoreport.policies.models import Target
from ecoreport.policies.services import target_create, target_evaluate
from tests.conftest import make_batch, make_sample
from tests.factories import energy_target

pytestmark = pytest.mark.django_db


@pytest.fixture
def target(cast):
    return target_create(
        organization=cast.org,
        name="Energy cap",
        scope_kind="org",
        metric="energy_kwh",
        comparator="at_most",
        threshold=5000.0,
        period="quarter",
    )


def test_members_see_targets_with_status(client, cast, target):
    client.force_login(cast.member.user)
    response = client.get("/targets/")
    assert response.status_code == 200
    assert b"Energy cap" in response.content
    assert b"Create target" not in response.content  # members do not get the form


def test_outsider_sees_no_targets_of_acme(client, cast, target):
    client.force_login(cast.outsider.user)
    response = client.get("/targets/")
    assert b"Energy cap" not in response.content
    assert client.get(f"/targets/?edit={target.pk}").status_code == 404


def test_admin_creates_a_target_from_the_page(client, cast):
    client.force_login(cast.owner.user)
    response = client.post(
        "/targets/",
        {
            "name": "Utilization floor",
            "scope": "org",
            "metric": "avg_gpu_util_pct",
            "comparator": "at_least",
            "threshold": "60",
            "period": "month",
            "forecast_method": "run_rate",
        },
    )
    assert response.status_code == 302
    created = Target.objects.get(name="Utilization floor")
    assert (created.metric, created.threshold, created.organization) == (
        "avg_gpu_util_pct",
        60.0,
        cast.org,
    )


def test_invalid_target_is_explained_and_not_saved(client, cast):
    client.force_login(cast.owner.user)
    response = client.post(
        "/targets/",
        {
            "name": "Bad",
            "scope": "org",
            "metric": "avg_gpu_util_pct",
            "comparator": "at_least",
            "threshold": "140",
            "baseline": "previous_period",
            "period": "month",
        },
    )
    assert response.status_code == 200
    assert b"was not saved" in response.content
    # Each error names its field and metric as the form does, not by their keys.
    page = response.content.decode()
    assert "<li>Threshold: GPU utilization is at most 100 %; got 140</li>" in page
    assert "<li>Baseline: a baseline only applies to a relative target" in page
    assert not Target.objects.filter(name="Bad").exists()


def test_admin_edits_a_target(client, cast, target):
    client.force_login(cast.owner.user)
    response = client.post(
        "/targets/",
        {
            "target_id": target.pk,
            "name": "Energy cap",
            "scope": "org",
            "metric": "energy_kwh",
            "comparator": "at_most",
            "threshold": "4000",
            "period": "quarter",
        },
    )
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.threshold == 4000.0


def test_member_cannot_post_targets(client, cast):
    client.force_login(cast.member.user)
    response = client.post(
        "/targets/",
        {
            "name": "x",
            "scope": "org",
            "metric": "energy_kwh",
            "comparator": "at_most",
            "threshold": "1",
            "period": "month",
        },
    )
    assert response.status_code == 403
    assert not Target.objects.exists()


def test_overview_lists_targets_in_a_fixed_number_of_queries(
    client, cast, django_assert_max_num_queries
):
    for i in range(6):
        target_create(
            organization=cast.org,
            name=f"Cap {i}",
            scope_kind="org",
            metric="energy_kwh",
            comparator="at_most",
            threshold=1000.0 + i,
            period="month",
        )
    client.force_login(cast.member.user)
    with django_assert_max_num_queries(14):
        response = client.get("/")
    assert response.content.count(b"Cap ") >= 6


def test_targets_and_pickers_name_teams_and_projects(client, cast):
    # Issue 12: a team registered from "研究チーム" has a digest slug; people read its name.
    from ecoreport.organizations.models import Project, Team

    team = Team.objects.create(organization=cast.org, slug="efde87f5ca", name="研究チーム")
    Project.objects.create(organization=cast.org, slug="nlp-636bcea2e9", name="nlp⟨U+200B⟩")
    target_create(
        organization=cast.org,
        name="Research cap",
        scope_kind="team",
        team=team,
        metric="energy_kwh",
        comparator="at_most",
        threshold=10.0,
        period="month",
    )
    client.force_login(cast.owner.user)
    page = client.get("/targets/").content.decode()
    assert "<td>Team 研究チーム</td>" in page
    assert '<option value="team:efde87f5ca" >Team 研究チーム</option>' in page
    assert '<option value="project:nlp-636bcea2e9" >Project nlp⟨U+200B⟩</option>' in page
    overview = client.get("/").content.decode()
    assert "<td>Team 研究チーム</td>" in overview  # targets at a glance


# -- history -----------------------------------------------------------------------------------


def _month_starts(n: int):
    from ecoreport.core.periods import period_shift, period_start

    current = period_start("month", timezone.now())
    return [period_shift("month", current, -k) for k in range(n, -1, -1)]


@pytest.fixture
def months_of_usage(cast, agent, post_batch):
    """Ten hours of 300 W on the 3rd of each of the last four months and of this one."""
    samples = [
        make_sample(start=m + timedelta(days=2, hours=h), seconds=3600, energy_j=3600 * 300.0)
        for m in _month_starts(4)
        for h in range(10)
        if m + timedelta(days=2, hours=h + 1) < timezone.now()
    ]
    assert post_batch(agent.token, make_batch(samples)).json()["rejected"] == []
    return _month_starts(4)


def test_history_has_a_point_per_ended_period_from_the_rollups_and_says_where_it_starts(
    client, cast, months_of_usage
):
    target = energy_target(cast.org, threshold=2.5)
    target_evaluate(target=target)  # one stored evaluation, as a new target has
    client.force_login(cast.member.user)

    response = client.get(f"/targets/?target={target.pk}")

    figure = response.context["figures"]["history"]
    traces = {t["name"]: t for t in figure["data"]}
    ended = traces["Each ended period"]
    assert ended["mode"] == "lines+markers"
    assert ended["x"] == [m.isoformat() for m in months_of_usage[1:]]  # each period's end
    assert ended["y"] == pytest.approx([3.0] * 4)  # 10 h x 300 W each month
    assert traces["Threshold"]["y"] == pytest.approx([2.5] * 5)
    so_far = traces["This period so far"]
    assert len(so_far["x"]) == 1 and so_far["mode"] == "lines+markers"  # one point: a marker
    # The axis spans the history and this period, not the millisecond of one evaluation.
    assert figure["layout"]["xaxis"]["range"][0] == months_of_usage[0].isoformat()
    first = (months_of_usage[0] + timedelta(days=2)).strftime("%Y-%m-%d")
    note = response.context["history"]["note"]
    assert note.startswith(f"History starts {months_of_usage[0]:%Y-%m-%d}")
    assert f"first measured usage of this scope being {first} 00:00 UTC" in note
    assert escape(note) in response.content.decode()


def test_history_is_capped_and_says_so(client, cast, months_of_usage, monkeypatch):
    from ecoreport.policies import evaluation

    monkeypatch.setattr(evaluation, "HISTORY_PERIODS", 2)
    target = energy_target(cast.org, threshold=2.5)
    client.force_login(cast.member.user)
    history = client.get("/targets/").context["history"]
    assert len(history["figure"]["data"][0]["x"]) == 2
    assert "(the last 2 months are shown; usage was first measured" in history["note"]
    assert target.name.encode() in client.get("/targets/").content


def test_history_of_a_scope_without_usage_says_there_is_none(client, cast, target):
    client.force_login(cast.member.user)
    history = client.get("/targets/").context["history"]
    assert history["note"].startswith("No measured usage in this scope yet")
    assert history["figure"]["data"][0]["x"] == []
