"""The CodeCarbon-compatible ingest: what an unmodified tracker sends is booked as the token's
team's and project's job energy, by component, once, with EcoReport's own factors."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Sum

from ecoreport.accounting.models import HourlyJobUsage, HourlySummary, HourlyUsage
from ecoreport.codecarbon.models import Emission, EnergyPart, Experiment, Run
from ecoreport.codecarbon.services import token_revoke
from tests.codecarbon.conftest import EXPERIMENT, captured
from tests.conftest import iso

pytestmark = pytest.mark.django_db

J_PER_KWH = 3_600_000.0
# Recent, whole-hour based times: the ingest refuses deltas far in the past or the future.
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def delta(run_id: str, *, end: datetime, duration: float = 60, **energies: float) -> dict:
    """A body as CodeCarbon 3.3.2 sends it (every field of the capture), with these values."""
    body = dict(captured()[1]["body"])
    body.update(
        run_id=run_id,
        timestamp=end.isoformat(),
        duration=duration,
        cpu_energy=energies.get("cpu", 0.002),
        gpu_energy=energies.get("gpu", 0.01),
        ram_energy=energies.get("ram", 0.0005),
    )
    body["energy_consumed"] = body["cpu_energy"] + body["gpu_energy"] + body["ram_energy"]
    return body


def usage(client, token: str, **params) -> dict:
    params = {"start": iso(HOUR - timedelta(hours=2)), "end": iso(HOUR + timedelta(hours=4))} | {
        k: v for k, v in params.items()
    }
    response = client.get("/api/v1/usage", params, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    return response.json()


def test_the_captured_tracker_requests_are_answered_as_codecarbon_expects(tracker, post_cc):
    runs, *emissions = captured()
    assert runs["path"] == "/runs"
    answer = post_cc("runs", runs["body"], tracker.raw)
    assert answer.status_code == 201
    run_id = answer.json()["id"]
    assert uuid.UUID(run_id)
    # The capture's instants, moved to the recent past (older ones are refused).
    shift = HOUR - datetime.fromisoformat(runs["body"]["timestamp"]).replace(minute=0, second=0)
    for request in emissions:
        assert request["path"] == "/emissions"
        body = {**request["body"], "run_id": run_id}
        body["timestamp"] = (datetime.fromisoformat(body["timestamp"]) + shift).isoformat()
        response = post_cc("emissions", body, tracker.raw)
        assert response.status_code == 201, response.content
        assert response.json()["duplicate"] is False
    run = Run.objects.get(run_id=run_id)
    assert (run.team, run.project, run.site, run.job_id) == (
        tracker.team,
        tracker.project,
        tracker.site,
        run_id,
    )
    assert run.client["codecarbon_version"] == "3.3.2"
    assert run.client["longitude"] is None  # 3.3.2's offline tracker sends null coordinates
    experiment = Experiment.objects.get()
    assert (str(experiment.experiment_id), experiment.project) == (EXPERIMENT, tracker.project)
    assert Emission.objects.filter(run=run).count() == 3


def test_deltas_are_booked_by_component_as_the_tokens_job(
    cast, client, tracker, post_cc, start_run
):
    run_id = start_run(tracker.raw)
    for i in range(3):
        end = HOUR + timedelta(minutes=10 + i)
        assert post_cc("emissions", delta(run_id, end=end), tracker.raw).status_code == 201
    body = usage(client, cast.owner_token)
    totals = body["totals"]
    assert totals["cpu_energy_kwh"] == pytest.approx(3 * 0.002, rel=1e-12)
    assert totals["gpu_energy_kwh"] == pytest.approx(3 * 0.01, rel=1e-12)
    assert totals["ram_energy_kwh"] == pytest.approx(3 * 0.0005, rel=1e-12)
    assert totals["energy_kwh"] == pytest.approx(3 * 0.0125, rel=1e-12)
    assert totals["energy_kwh"] == pytest.approx(
        totals["cpu_energy_kwh"] + totals["gpu_energy_kwh"] + totals["ram_energy_kwh"], rel=1e-12
    )
    by_project = usage(client, cast.owner_token, group_by="team,project,source")["rows"]
    assert [(r["team"], r["project"], r["source"]) for r in by_project] == [
        ("nlp", "llm", "codecarbon")
    ]
    jobs = HourlyJobUsage.objects.filter(job_id=run_id)
    assert {j.component for j in jobs} == {"cpu", "gpu", "ram"}
    assert {(j.team_id, j.project_id, j.source) for j in jobs} == {
        (tracker.team.pk, tracker.project.pk, "codecarbon")
    }
    # The summary the dashboards read agrees with the rows.
    assert HourlySummary.objects.aggregate(e=Sum("energy_j"))["e"] == pytest.approx(
        3 * 0.0125 * J_PER_KWH, rel=1e-12
    )


def test_emissions_use_the_sites_pue_and_factors_not_the_trackers(tracker, post_cc, start_run):
    run_id = start_run(tracker.raw)
    body = delta(run_id, end=HOUR + timedelta(minutes=5)) | {"emissions_sum": 1000.0}
    assert post_cc("emissions", body, tracker.raw).status_code == 201
    rows = list(HourlyUsage.objects.all())
    energy_j = sum(r.energy_j for r in rows)
    assert energy_j == pytest.approx(0.0125 * J_PER_KWH, rel=1e-12)
    for row in rows:
        assert row.pue == 1.25
        assert row.intensity_g_per_kwh > 0
        assert row.facility_energy_j == pytest.approx(row.energy_j * 1.25, rel=1e-12)
        expected_g = row.energy_j / J_PER_KWH * 1.25 * row.intensity_g_per_kwh
        assert row.co2e_g == pytest.approx(expected_g, rel=1e-12)
    assert sum(r.co2e_g for r in rows) < 1000.0 * 1000  # the tracker's 1 t was not used


def test_a_delta_across_hours_is_split_by_time(tracker, post_cc, start_run):
    run_id = start_run(tracker.raw)
    # 30 minutes ending 10 minutes into the hour: 20 minutes before it, 10 in it.
    body = delta(run_id, end=HOUR + timedelta(minutes=10), duration=1800, cpu=0.3, gpu=0, ram=0.03)
    assert post_cc("emissions", body, tracker.raw).status_code == 201
    by_hour = {
        (r["hour"], r["component"]): r["e"]
        for r in HourlyUsage.objects.values("hour", "component").annotate(e=Sum("energy_j"))
    }
    before, after = HOUR - timedelta(hours=1), HOUR
    assert by_hour[(before, "cpu")] == pytest.approx(0.2 * J_PER_KWH, rel=1e-12)
    assert by_hour[(after, "cpu")] == pytest.approx(0.1 * J_PER_KWH, rel=1e-12)
    assert by_hour[(before, "ram")] == pytest.approx(0.02 * J_PER_KWH, rel=1e-12)
    assert by_hour[(after, "ram")] == pytest.approx(0.01 * J_PER_KWH, rel=1e-12)
    assert (before, "gpu") not in by_hour  # zero energy books no row
    assert sum(by_hour.values()) == pytest.approx(0.33 * J_PER_KWH, rel=1e-12)


def test_a_replayed_body_is_not_booked_twice(cast, client, tracker, post_cc, start_run):
    run_id = start_run(tracker.raw)
    body = delta(run_id, end=HOUR + timedelta(minutes=20))
    first = post_cc("emissions", body, tracker.raw)
    # The same JSON with its keys in another order is the same body.
    again = post_cc("emissions", dict(reversed(body.items())), tracker.raw)
    assert (first.status_code, again.status_code) == (201, 201)
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    assert again.json()["id"] == first.json()["id"]
    assert EnergyPart.objects.count() == 3
    assert usage(client, cast.owner_token)["totals"]["energy_kwh"] == pytest.approx(0.0125)
    # Another body at the same instant of the same run is a conflict, and books nothing.
    other = post_cc("emissions", body | {"cpu_energy": 0.5}, tracker.raw)
    assert other.status_code == 409, other.content
    assert usage(client, cast.owner_token)["totals"]["energy_kwh"] == pytest.approx(0.0125)


def test_gpu_energy_is_ignored_for_hosts_the_agent_measures(
    cast, client, make_tracker, post_cc, start_run
):
    tracker = make_tracker(exclude_gpu=True)
    run_id = start_run(tracker.raw)
    answer = post_cc("emissions", delta(run_id, end=HOUR + timedelta(minutes=1)), tracker.raw)
    assert answer.json()["booked_components"] == ["cpu", "ram"]
    totals = usage(client, cast.owner_token)["totals"]
    assert totals["gpu_energy_kwh"] == 0.0
    assert totals["energy_kwh"] == pytest.approx(0.0025, rel=1e-12)
    assert Emission.objects.get().gpu_energy_kwh == 0.01  # kept as received, not booked


def test_agent_and_codecarbon_energy_are_told_apart_by_source(
    cast, client, tracker, post_cc, start_run, agent, post_batch
):
    from tests.conftest import make_batch, make_sample

    run_id = start_run(tracker.raw)
    post_cc("emissions", delta(run_id, end=HOUR + timedelta(minutes=30)), tracker.raw)
    sample = make_sample(start=HOUR + timedelta(minutes=5), energy_j=3600.0)
    assert post_batch(agent.token, make_batch([sample])).status_code == 200
    rows = usage(client, cast.owner_token, group_by="source")["rows"]
    by_source = {r["source"]: r for r in rows}
    assert by_source["agent"]["energy_kwh"] == pytest.approx(0.001, rel=1e-12)
    assert by_source["agent"]["gpu_energy_kwh"] == pytest.approx(0.001, rel=1e-12)
    assert by_source["agent"]["cpu_energy_kwh"] == 0.0
    assert by_source["codecarbon"]["energy_kwh"] == pytest.approx(0.0125, rel=1e-12)
    # Re-rolling the hour (late agent data does) rebuilds both sources, neither twice.
    late = make_sample(start=HOUR + timedelta(minutes=40), energy_j=3600.0)
    assert post_batch(agent.token, make_batch([late])).status_code == 200
    totals = usage(client, cast.owner_token)["totals"]
    assert totals["energy_kwh"] == pytest.approx(0.0125 + 0.002, rel=1e-12)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"run_id": "not-a-uuid"}, "run_id"),
        ({"run_id": None}, "run_id"),
        ({"duration": 0}, "duration"),
        ({"duration": -5}, "duration"),
        ({"duration": "60"}, "duration"),
        ({"cpu_energy": -0.1}, "cpu_energy"),
        ({"gpu_energy": "0.1"}, "gpu_energy"),
        ({"ram_energy": None}, "ram_energy"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": "2026-11-28T10:00:00"}, "timestamp"),  # no UTC offset
        ({"emissions_sum": -1}, "emissions_sum"),
    ],
)
def test_malformed_deltas_answer_422_and_book_nothing(tracker, post_cc, start_run, change, field):
    run_id = start_run(tracker.raw)
    body = delta(run_id, end=HOUR) | change
    response = post_cc("emissions", body, tracker.raw)
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["details"]
    assert not Emission.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'{"cpu_energy": NaN}', b"\xff\xfe"],
)
def test_bodies_that_are_not_a_json_object_answer_422(tracker, post_cc, raw):
    for path in ("runs", "emissions"):
        response = post_cc(path, None, tracker.raw, raw=raw)
        assert response.status_code == 422, (path, response.content)
        assert "body" in response.json()["error"]["details"]


def test_deltas_in_the_future_or_missing_fields_answer_422(tracker, post_cc, start_run):
    run_id = start_run(tracker.raw)
    future = delta(run_id, end=datetime.now(UTC) + timedelta(hours=1))
    assert post_cc("emissions", future, tracker.raw).status_code == 422
    missing = delta(run_id, end=HOUR)
    del missing["cpu_energy"]
    assert post_cc("emissions", missing, tracker.raw).status_code == 422
    no_experiment = {k: v for k, v in captured()[0]["body"].items() if k != "experiment_id"}
    assert post_cc("runs", no_experiment, tracker.raw).status_code == 422


@pytest.mark.parametrize("token", [None, "", "api_key", "ecc_not-a-token"])
def test_a_missing_or_unknown_token_is_refused(tracker, post_cc, token):
    # "api_key" is what an unconfigured tracker sends.
    response = post_cc("runs", captured()[0]["body"], token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("not_authenticated", "authentication_failed")
    assert not Run.objects.exists()


def test_a_revoked_token_no_longer_reports(tracker, post_cc, start_run):
    run_id = start_run(tracker.raw)
    token_revoke(token=tracker.token)
    response = post_cc("emissions", delta(run_id, end=HOUR), tracker.raw)
    assert response.status_code == 401
    assert post_cc("runs", captured()[0]["body"], tracker.raw).status_code == 401


def test_a_token_cannot_post_to_another_tokens_run(cast, make_tracker, post_cc, start_run):
    ours = make_tracker()
    theirs = make_tracker(org=cast.other_org)
    their_run = start_run(theirs.raw)
    response = post_cc("emissions", delta(their_run, end=HOUR), ours.raw)
    assert response.status_code == 404
    assert not Emission.objects.exists()


def test_the_outsider_sees_none_of_it(cast, client, tracker, post_cc, start_run):
    run_id = start_run(tracker.raw)
    post_cc("emissions", delta(run_id, end=HOUR + timedelta(minutes=1)), tracker.raw)
    assert usage(client, cast.outsider_token)["totals"]["energy_kwh"] == 0.0
    assert usage(client, cast.owner_token)["totals"]["energy_kwh"] > 0.0


def test_a_known_experiment_keeps_its_project_and_runs_are_new_jobs(tracker, start_run):
    first, second = start_run(tracker.raw), start_run(tracker.raw)
    assert first != second
    assert Experiment.objects.count() == 1
    assert Run.objects.filter(experiment__experiment_id=EXPERIMENT).count() == 2


def test_routes_have_no_trailing_slash(tracker, client):
    response = client.post(
        "/api/codecarbon/runs/",
        data=json.dumps(captured()[0]["body"]),
        content_type="application/json",
        HTTP_X_API_TOKEN=tracker.raw,
    )
    # A JSON 404, never a redirect that would drop the body.
    assert response.status_code == 404


def test_gpu_ratios_rest_on_the_agents_energy_alone(
    cast, client, tracker, post_cc, start_run, agent, post_batch
):
    from tests.conftest import make_batch, make_sample

    # 600 s at 300 W with no process on the GPU: all of it idle, 300 Wh per GPU-hour.
    idle = make_sample(start=HOUR + timedelta(minutes=1), seconds=600, energy_j=180_000.0)
    assert post_batch(agent.token, make_batch([idle])).status_code == 200
    agent_only = usage(client, cast.owner_token)["totals"]
    run_id = start_run(tracker.raw)
    post_cc("emissions", delta(run_id, end=HOUR + timedelta(minutes=30), cpu=0.5), tracker.raw)
    mixed = usage(client, cast.owner_token)["totals"]
    assert mixed["energy_kwh"] > agent_only["energy_kwh"]
    for ratio in ("idle_energy_share_pct", "energy_per_gpu_hour_wh"):
        assert mixed[ratio] == pytest.approx(agent_only[ratio], rel=1e-12), ratio
    assert mixed["idle_energy_share_pct"] == pytest.approx(100.0)
    assert mixed["energy_per_gpu_hour_wh"] == pytest.approx(300.0)
