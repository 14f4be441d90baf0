"""One GPU, one host: a GPU that a second host lists while its own host reports it stays put,
and the second host's samples of it are refused with a reason; after the window it moves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ecoreport.fleet.models import Gpu, GpuClaimConflict
from ecoreport.telemetry.models import EnergySample
from tests.conftest import BASE_TIME, make_batch, make_sample

pytestmark = pytest.mark.django_db


def _samples(gpu: str, n: int = 3, offset_s: int = 0) -> list[dict]:
    return [
        make_sample(gpu=gpu, start=BASE_TIME + timedelta(seconds=offset_s + 10 * i))
        for i in range(n)
    ]


@pytest.fixture
def two_hosts(cast, make_agent, post_batch):
    first = make_agent(cast.org, hostname="sim-node-01")
    second = make_agent(cast.org, hostname="laptop")
    answer = post_batch(first.token, make_batch(_samples("GPU-shared"))).json()
    assert answer["accepted"] == 3
    return first, second


def test_a_gpu_that_a_live_host_reports_is_refused_from_a_second_host(two_hosts, post_batch):
    first, second = two_hosts
    # The second agent sends the same UUID (and, as simulators do, the same intervals) plus a
    # GPU of its own.
    samples = _samples("GPU-shared") + _samples("GPU-own")
    answer = post_batch(second.token, make_batch(samples)).json()

    assert answer["accepted"] == 3 and answer["duplicates"] == 0
    assert [r["index"] for r in answer["rejected"]] == [0, 1, 2]
    reason = answer["rejected"][0]
    assert reason["field"] == "gpu_uuid"
    assert reason["error"].startswith("GPU GPU-shared is reported by host 'sim-node-01' (last")
    assert "only once 'sim-node-01' has not listed it for 15 minutes" in reason["error"]

    shared = Gpu.objects.get(uuid="GPU-shared")
    assert shared.host_id == first.host.pk  # not moved
    assert Gpu.objects.get(uuid="GPU-own").host_id == second.host.pk
    assert EnergySample.objects.filter(gpu=shared).count() == 3
    assert set(EnergySample.objects.filter(gpu=shared).values_list("host_id", flat=True)) == {
        first.host.pk
    }

    # The first host goes on reporting as before; the second's next batch is refused again.
    later = _samples("GPU-shared", n=2, offset_s=30)
    assert post_batch(first.token, make_batch(later)).json()["accepted"] == 2
    assert len(post_batch(second.token, make_batch(later)).json()["rejected"]) == 2
    conflict = GpuClaimConflict.objects.get()
    assert (conflict.gpu_id, conflict.claimant_id, conflict.samples_refused) == (
        shared.pk,
        second.host.pk,
        5,
    )
    assert Gpu.objects.get(uuid="GPU-shared").host_id == first.host.pk


@pytest.mark.parametrize(
    ("silent_minutes", "moves"),
    [(14, False), (16, True)],
)
def test_a_gpu_moves_once_its_old_host_has_not_listed_it_for_the_window(
    two_hosts, post_batch, silent_minutes, moves
):
    first, second = two_hosts
    Gpu.objects.filter(uuid="GPU-shared").update(
        last_seen_at=timezone.now() - timedelta(minutes=silent_minutes)
    )
    later = _samples("GPU-shared", n=2, offset_s=30)

    answer = post_batch(second.token, make_batch(later)).json()

    gpu = Gpu.objects.get(uuid="GPU-shared")
    if moves:
        assert (answer["accepted"], answer["rejected"]) == (2, [])
        assert gpu.host_id == second.host.pk
        # Now the new host holds it: the old one, back within the window, is refused.
        back = post_batch(first.token, make_batch(_samples("GPU-shared", n=1, offset_s=60)))
        assert "reported by host 'laptop'" in back.json()["rejected"][0]["error"]
        assert not GpuClaimConflict.objects.filter(claimant=second.host).exists()
    else:
        assert answer["accepted"] == 0 and len(answer["rejected"]) == 2
        assert gpu.host_id == first.host.pk


def test_the_window_is_a_setting(two_hosts, post_batch, settings):
    _, second = two_hosts
    settings.INGEST_GPU_CLAIM_WINDOW_MINUTES = 60
    Gpu.objects.filter(uuid="GPU-shared").update(
        last_seen_at=timezone.now() - timedelta(minutes=30)
    )
    answer = post_batch(second.token, make_batch(_samples("GPU-shared", n=1, offset_s=30)))
    assert "has not listed it for 60 minutes" in answer.json()["rejected"][0]["error"]


def test_the_fleet_page_warns_members_about_a_gpu_two_hosts_report(
    client, cast, two_hosts, post_batch
):
    _, second = two_hosts
    post_batch(second.token, make_batch(_samples("GPU-shared")))

    for membership in (cast.owner, cast.member):
        client.force_login(membership.user)
        page = client.get("/fleet/").content.decode()
        assert "GPUs reported by two hosts" in page
        assert "(<code>GPU-shared</code>) also listed by laptop: 3 samples refused" in page
        assert "has not reported it for 15 minutes" in page

    client.force_login(cast.outsider.user)
    page = client.get("/fleet/").content.decode()
    assert "GPUs reported by two hosts" not in page and "GPU-shared" not in page


def test_the_fleet_page_has_no_warning_without_a_conflict(client, cast, two_hosts):
    client.force_login(cast.member.user)
    assert "GPUs reported by two hosts" not in client.get("/fleet/").content.decode()
