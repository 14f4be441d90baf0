"""The demo's live fleet: every seeded host goes on reporting from where its history stops, so
history and live data join without a gap and no host reads "offline" after `make demo`."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from ecoreport.dashboards.selectors import live_fleet
from ecoreport.demo.live import LiveFleet
from ecoreport.organizations.models import Organization
from ecoreport.telemetry.models import EnergySample

pytestmark = pytest.mark.django_db

SEEDED = datetime(2026, 11, 30, 12, 20, tzinfo=UTC)


def test_every_seeded_host_continues_from_its_last_sample(settings):
    settings.DEBUG = True
    with time_machine.travel(SEEDED, tick=False):
        call_command("seed_demo", "--days", "1", "--gpus", "5", stdout=StringIO())
    org = Organization.objects.get(slug="demo")
    history_end = SEEDED.replace(minute=0)  # the history stops at the hour seeding began
    before = EnergySample.objects.filter(organization=org).count()
    start = SEEDED + timedelta(minutes=3)
    fleet = LiveFleet(org, step_s=10, now=start)
    assert len(fleet.hosts) == 2 and len(fleet.states) == 5
    # The first tick catches up from the end of the history in live steps, with no gap.
    accepted = fleet.tick(start)
    assert accepted == 5 * (23 * 60 // 10)  # 23 minutes of 10 s samples per GPU
    for gpu_id in fleet.states:
        rows = list(
            EnergySample.objects.filter(gpu_id=gpu_id, start__gte=history_end - timedelta(hours=1))
            .order_by("start")
            .values_list("start", "end")
        )
        assert all(a[1] == b[0] for a, b in itertools.pairwise(rows)), "gap or overlap"
        assert rows[-1][1] == start
    # Later ticks add what elapsed, nothing twice.
    assert fleet.tick(start + timedelta(seconds=25)) == 5 * 2
    assert fleet.tick(start + timedelta(seconds=25)) == 0
    assert EnergySample.objects.filter(organization=org).count() == before + accepted + 10
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        state = live_fleet(org)
    assert state["gpus_silent"] == 0 and not any(h["offline"] for h in state["hosts"])
    assert state["power_w"] > 0


def test_a_long_stop_is_caught_up_in_half_hour_steps(settings):
    settings.DEBUG = True
    with time_machine.travel(SEEDED, tick=False):
        call_command("seed_demo", "--days", "1", "--gpus", "1", stdout=StringIO())
    org = Organization.objects.get(slug="demo")
    later = SEEDED.replace(minute=0) + timedelta(days=2, seconds=30)
    fleet = LiveFleet(org, step_s=10, now=later)
    accepted = fleet.tick(later)
    # Half-hour steps while more than an hour is missing (up to 11:30 on the last day), then the
    # last half hour and 30 s in 10 s steps.
    assert accepted == (2 * 48 - 1) + (1800 + 30) // 10


def test_the_command_explains_a_missing_demo():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="seed_demo"):
        call_command("demo_live", "--cycles", "1", stdout=StringIO())
