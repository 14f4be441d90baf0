"""The job and user pages: a job's totals, timeline, GPUs and savings; the user's jobs. Owner and
member see them, an outsider gets a 404; the biggest-jobs tables link to them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ecoreport.savings.assumptions import Assumptions
from ecoreport.savings.selectors import what_if_fractions
from tests.conftest import make_batch, make_sample

pytestmark = pytest.mark.django_db

JOB = "slurm/train-42"  # a job id with a slash: the URL keeps it whole


@pytest.fixture
def job_ran(cast, agent, post_batch):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    owner = {"team": "nlp", "project": "llm", "job_id": JOB, "user": "alice"}
    samples = []
    for i in range(3):  # three hours on two GPUs at 300 W and 200 W
        for gpu, watts in (("GPU-0", 300.0), ("GPU-1", 200.0)):
            samples.append(
                make_sample(
                    gpu=gpu,
                    start=start + timedelta(hours=i),
                    seconds=3600,
                    energy_j=3600 * watts,
                    attribution=[{"share": 1.0, **owner}],
                    gpu_util_pct=20.0,
                )
            )
    # Another job of another user on GPU-0 afterwards.
    samples.append(
        make_sample(
            start=start + timedelta(hours=4),
            seconds=3600,
            energy_j=3600 * 100.0,
            attribution=[{"share": 1.0, "team": "nlp", "project": "llm", "job_id": "other"}],
        )
    )
    assert post_batch(agent.token, make_batch(samples)).json()["accepted"] == 7
    return cast


def test_the_job_page_gives_its_totals_gpus_and_savings(client, job_ran):
    client.force_login(job_ran.member.user)
    response = client.get(f"/jobs/{JOB}/")
    assert response.status_code == 200
    job = response.context["job"]
    assert job["energy_kwh"] == pytest.approx(1.5)  # 3 h x 500 W
    assert job["gpu_hours"] == pytest.approx(6.0)
    assert job["peak_gpus"] == 2
    assert [t.slug for t in job["teams"]] == ["nlp"] and job["users"] == ["alice"]
    assert [h["energy_kwh"] for h in job["hours"]] == pytest.approx([0.5, 0.5, 0.5])
    assert [(g["uuid"], round(g["energy_kwh"], 9)) for g in job["gpus"]] == [
        ("GPU-0", 0.9),
        ("GPU-1", 0.6),
    ]
    # 20 % utilization is below the default threshold: the page says so.
    assert job["low_utilization"] is True
    assert "below the" in response.content.decode()
    expected = {k: f for k, f, _ in what_if_fractions(Assumptions())}
    for w in job["what_ifs"]:
        assert w["energy_kwh"] == pytest.approx(1.5 * expected[w["key"]])
        assert w["co2e_kg"] == pytest.approx(job["co2e_kg"] * expected[w["key"]])
    body = response.content.decode()
    assert 'data-figure="job-energy"' in body and "/users/alice/" in body


def test_the_hourly_timeline_downloads(client, job_ran):
    client.force_login(job_ran.owner.user)
    response = client.get(f"/jobs/{JOB}/?download=hours")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert len(response.content.decode().strip().splitlines()) == 4  # header + 3 hours


def test_the_team_pages_biggest_jobs_link_to_the_job_and_user_pages(client, job_ran):
    client.force_login(job_ran.member.user)
    body = client.get("/teams/nlp/?period=7d").content.decode()
    assert f'href="/jobs/{JOB}/"' in body
    assert 'href="/users/alice/?' in body


def test_the_user_page_lists_only_that_users_jobs(client, job_ran):
    client.force_login(job_ran.member.user)
    response = client.get("/users/alice/?period=7d")
    assert response.status_code == 200
    assert [j["job_id"] for j in response.context["jobs"]] == [JOB]
    assert response.context["totals"]["energy_kwh"] == pytest.approx(1.5)


def test_an_outsider_and_an_unknown_job_get_404(client, job_ran):
    client.force_login(job_ran.outsider.user)
    assert client.get(f"/jobs/{JOB}/").status_code == 404
    assert client.get("/users/alice/").context["jobs"] == []
    client.force_login(job_ran.owner.user)
    assert client.get("/jobs/no-such-job/").status_code == 404


def test_the_host_and_gpu_pages(client, job_ran):
    client.force_login(job_ran.member.user)
    host = client.get("/hosts/gpu-node-01/?period=7d")
    assert host.status_code == 200
    data = host.context["data"]
    assert data["totals"]["energy_kwh"] == pytest.approx(1.6)  # 1.5 of the job + 0.1 after
    assert [g.uuid for g in host.context["gpus"]] == ["GPU-0", "GPU-1"]
    assert [(j["job_id"], round(j["energy_kwh"], 9)) for j in data["jobs"]] == [
        (JOB, 1.5),
        ("other", 0.1),
    ]
    assert sum(r["energy_kwh"] for r in data["series"]) == pytest.approx(1.6)
    body = host.content.decode()
    assert 'href="/gpus/GPU-1/?' in body and f'href="/jobs/{JOB}/"' in body
    gpu = client.get("/gpus/GPU-1/?period=7d")
    assert gpu.status_code == 200
    assert gpu.context["data"]["totals"]["energy_kwh"] == pytest.approx(0.6)
    assert [r["project"] for r in gpu.context["data"]["split"]] == ["llm"]
    # The fleet page and the job page link to them.
    assert 'href="/hosts/gpu-node-01/?' in client.get("/fleet/").content.decode()
    assert 'href="/gpus/GPU-0/"' in client.get(f"/jobs/{JOB}/").content.decode()


def test_an_outsider_gets_404_for_the_host_and_gpu(client, job_ran):
    client.force_login(job_ran.outsider.user)
    assert client.get("/hosts/gpu-node-01/").status_code == 404
    assert client.get("/gpus/GPU-0/").status_code == 404
