"""The live panel's JSON: the fleet right now from each GPU's latest sample, per organization."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import make_batch, make_sample

pytestmark = pytest.mark.django_db


def _now_hour():
    return timezone.now().replace(microsecond=0)


def test_power_busy_idle_and_each_hosts_last_sample(client, cast, agent, make_agent, post_batch):
    now = _now_hour()
    # GPU-0 busy at 400 W, GPU-1 idle at 80 W, both in the last minute; earlier samples differ,
    # so only the latest one per GPU counts.
    busy = [{"share": 1.0, "team": "nlp", "project": "llm", "job_id": "j1"}]
    samples = [
        make_sample(gpu="GPU-0", start=now - timedelta(seconds=70), energy_j=10 * 100.0),
        make_sample(
            gpu="GPU-0", start=now - timedelta(seconds=20), energy_j=10 * 400.0, attribution=busy
        ),
        make_sample(gpu="GPU-1", start=now - timedelta(seconds=20), energy_j=10 * 80.0),
    ]
    assert post_batch(agent.token, make_batch(samples)).json()["accepted"] == 3
    # A second host whose last sample ended an hour ago: offline, its power not counted.
    old = make_agent(cast.org, hostname="gpu-node-02")
    late = make_batch([make_sample(gpu="GPU-9", start=now - timedelta(hours=1), energy_j=5000.0)])
    late["agent"]["hostname"] = "gpu-node-02"
    assert post_batch(old.token, late).json()["accepted"] == 1

    client.force_login(cast.member.user)
    data = client.get("/fleet/live.json").json()
    assert data["power_w"] == pytest.approx(480.0)
    assert (data["gpus_busy"], data["gpus_idle"], data["gpus_silent"]) == (1, 1, 1)
    hosts = {h["host"]: h for h in data["hosts"]}
    assert hosts["gpu-node-01"]["offline"] is False
    assert hosts["gpu-node-01"]["status"] == "reporting"
    assert 0 <= hosts["gpu-node-01"]["seconds_since"] < 60
    assert hosts["gpu-node-02"]["offline"] is True
    assert hosts["gpu-node-02"]["status"].startswith("offline since ")
    gpus = {(g["host"], g["uuid"]): g for g in data["gpus"]}
    assert gpus[("gpu-node-01", "GPU-0")]["power_w"] == pytest.approx(400.0)
    assert gpus[("gpu-node-01", "GPU-1")]["state"] == "idle"


def test_a_new_sample_changes_the_answer(client, cast, agent, post_batch):
    client.force_login(cast.owner.user)
    assert client.get("/fleet/live.json").json()["power_w"] == 0.0
    now = _now_hour()
    batch = make_batch([make_sample(start=now - timedelta(seconds=15), energy_j=10 * 250.0)])
    post_batch(agent.token, batch)
    assert client.get("/fleet/live.json").json()["power_w"] == pytest.approx(250.0)


def test_another_organization_sees_none_of_it(client, cast, agent, post_batch):
    now = _now_hour()
    post_batch(agent.token, make_batch([make_sample(start=now - timedelta(seconds=15))]))
    client.force_login(cast.outsider.user)
    data = client.get("/fleet/live.json").json()
    assert data["hosts"] == [] and data["gpus"] == [] and data["power_w"] == 0.0


def test_signed_out_is_sent_to_the_login(client):
    response = client.get("/fleet/live.json")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_pages_carry_the_panel(client, cast):
    client.force_login(cast.member.user)
    for path in ("/", "/fleet/"):
        body = client.get(path).content.decode()
        assert 'data-live-url="/fleet/live.json"' in body, path
