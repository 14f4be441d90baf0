"""Settings refuse unsafe production starts; management commands do what the docs say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from ecoreport.accounting.models import HourlyUsage
from ecoreport.fleet.models import AgentCredential, Host, Site
from ecoreport.organizations.models import ApiToken, Membership, Organization, hash_token
from ecoreport.telemetry.models import EnergySample
from tests.factories import SiteFactory

ROOT = Path(__file__).resolve().parents[2]


def _django_setup(**env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ALLOWED_HOSTS", "DEBUG")
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "ecoreport.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "0"}, "SECRET_KEY must be set"),
        ({"DEBUG": "0", "SECRET_KEY": "s3cret-for-prod"}, "ALLOWED_HOSTS must be set"),
        ({"DEBUG": "maybe"}, "is not a boolean"),
        ({"DB_CONN_MAX_AGE": "forever"}, "is not an integer"),
        ({"DATABASE_POOLER": "pgpool"}, "the only value is 'pgbouncer-transaction'"),
    ],
)
def test_unsafe_or_malformed_settings_refuse_to_start(env, message):
    result = _django_setup(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_settings_start_with_their_secrets():
    result = _django_setup(DEBUG="0", SECRET_KEY="s3cret-for-prod", ALLOWED_HOSTS="eco.example.com")
    assert result.returncode == 0, result.stderr


def test_development_needs_no_environment():
    assert _django_setup().returncode == 0


def test_behind_pgbouncer_in_transaction_mode_no_server_side_cursors():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "d = s.DATABASES; print(d['default']['DISABLE_SERVER_SIDE_CURSORS'], sorted(d))",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "ecoreport.settings",
            "DATABASE_URL": "postgres://eco@db.internal:6432/eco",
            "DATABASE_REPLICA_URL": "postgres://eco@replica.internal:5432/eco",
            "DATABASE_POOLER": "pgbouncer-transaction",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "['default',", "'replica']"]


@pytest.mark.django_db
def test_create_org_and_tokens_print_the_token_alone():
    call_command("create_org", "acme", "--name", "Acme AI", stdout=StringIO())
    assert Organization.objects.get(slug="acme").name == "Acme AI"
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_org", "acme", "--name", "Again", stdout=StringIO())

    out = StringIO()
    call_command(
        "issue_api_token", "--org", "acme", "--user", "alice", "--role", "admin", stdout=out
    )
    token = out.getvalue().strip()
    assert "\n" not in token and token.startswith("eru_")
    api_token = ApiToken.objects.get(key_hash=hash_token(token))
    assert api_token.membership.role == "admin"
    assert Membership.objects.get(user__username="alice").organization.slug == "acme"
    # The token itself is not stored, only its hash.
    assert not ApiToken.objects.filter(key_hash=token).exists()

    SiteFactory(organization=Organization.objects.get(slug="acme"), slug="paris", name="Paris")
    out = StringIO()
    call_command(
        "issue_agent_token",
        "--org",
        "acme",
        "--host",
        "gpu-7",
        "--site",
        "paris",
        "--team",
        "platform",
        "--project",
        "infra",
        stdout=out,
    )
    agent_token = out.getvalue().strip()
    assert agent_token.startswith("era_")
    host = Host.objects.get(hostname="gpu-7")
    assert (host.site.slug, host.default_team.slug, host.default_project.slug) == (
        "paris",
        "platform",
        "infra",
    )
    assert AgentCredential.objects.get(key_hash=hash_token(agent_token)).host == host


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["issue_api_token", "--org", "nope", "--user", "u"], "No organization 'nope'"),
        (["issue_agent_token", "--org", "nope", "--host", "h"], "No organization 'nope'"),
        (["create_org", "Bad Slug!", "--name", "x"], "slug"),
    ],
)
def test_commands_explain_bad_arguments(args, message):
    if args[0] == "issue_agent_token" and "--site" in args:
        call_command("create_org", "acme", "--name", "Acme", stdout=StringIO())
    with pytest.raises(CommandError, match=message):
        call_command(*args, stdout=StringIO())


@pytest.mark.django_db
def test_unknown_site_is_named(cast):
    with pytest.raises(CommandError, match="No site 'mars'"):
        call_command(
            "issue_agent_token", "--org", "acme", "--host", "h", "--site", "mars", stdout=StringIO()
        )


@pytest.mark.django_db
def test_seed_demo_builds_history_and_rollups_and_reruns_cleanly(settings):
    settings.DEBUG = True
    out = StringIO()
    call_command("seed_demo", "--days", "2", "--gpus", "5", stdout=out)
    org = Organization.objects.get(slug="demo")
    samples = EnergySample.objects.filter(organization=org)
    assert samples.count() == 2 * 48 * 5
    assert "Sign in as demo / demo" in out.getvalue()
    assert "history 2/2 hosts" in out.getvalue()  # progress is shown
    from django.db.models import Count, Sum

    raw = samples.aggregate(e=Sum("energy_j"))["e"]
    rows = HourlyUsage.objects.filter(organization=org)
    rolled = rows.filter(source="agent").aggregate(e=Sum("energy_j"))["e"]
    assert rolled == pytest.approx(raw, rel=1e-12)
    # Two CodeCarbon trackers beside the agents: their deltas, by component, are rolled up too;
    # the one on an agent-measured host books no GPU energy.
    from ecoreport.codecarbon.models import EnergyPart

    tracked = EnergyPart.objects.filter(organization=org).aggregate(e=Sum("energy_j"))["e"]
    by_component = dict(
        rows.filter(source="codecarbon").values_list("component").annotate(e=Sum("energy_j"))
    )
    assert set(by_component) == {"gpu", "cpu", "ram"}
    assert sum(by_component.values()) == pytest.approx(tracked, rel=1e-12)
    assert "CodeCarbon deltas" in out.getvalue()
    # One job per GPU at a time: attributed samples say "single", idle ones nothing.
    splits = dict(samples.values_list("split").annotate(n=Count("id")))
    assert set(splits) == {"single", ""} and all(splits.values())
    from ecoreport.accounting.models import HourlyJobUsage, HourlySummary

    summary = HourlySummary.objects.filter(organization=org).aggregate(e=Sum("energy_j"))["e"]
    assert summary == pytest.approx(raw + tracked, rel=1e-12)
    # Jobs keep one id while they run: fewer jobs than GPU-days, some spanning several hours.
    jobs = HourlyJobUsage.objects.filter(organization=org)
    assert jobs.values("job_id").distinct().count() >= 3
    assert jobs.values("job_id").annotate(h=Count("hour")).filter(h__gt=4).exists()
    # The demo's hourly grid factors cover the whole history and the rollup applied them.
    usage = HourlyUsage.objects.filter(organization=org)
    assert not usage.exclude(intensity_resolution="hour").exists()
    assert usage.filter(market_basis="supplier").exists()
    assert Site.objects.filter(organization=org).values("grid_zone").distinct().count() == 3
    # Every demo zone has forecast hours ahead, so the best time to run answers for each one.
    from django.utils import timezone

    from ecoreport.savings.windows import best_window

    for zone in Site.objects.filter(organization=org).values_list("grid_zone", flat=True):
        answer = best_window(org, zone=zone, duration_h=4, within_h=24, now=timezone.now())
        assert answer["covered_h"] == 24 and answer["forecast"], zone
    from django.contrib.auth import authenticate

    demo = authenticate(username="demo", password="demo")
    assert demo is not None
    assert not demo.is_staff  # an organization admin: the Django admin would have nothing for it
    from ecoreport.reports.models import ReportSubscription

    assert ReportSubscription.objects.filter(organization=org, user__username="demo").exists()
    # The demo can be scraped: the printed token reads the demo's energy from /metrics.
    token = re.search(r"Bearer (eru_\S+)", out.getvalue()).group(1)
    scraped = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert scraped.status_code == 200
    energy = [
        s.value
        for f in text_string_to_metric_families(scraped.content.decode())
        for s in f.samples
        if s.name == "ecoreport_energy_joules_total"
    ]
    # IT energy from every source: the agents' samples and the trackers' deltas.
    assert sum(energy) == pytest.approx(raw + tracked, rel=1e-9)
    call_command("seed_demo", "--days", "1", "--gpus", "1", stdout=StringIO())
    assert EnergySample.objects.filter(organization__slug="demo").count() == 48


@pytest.mark.django_db
def test_seed_demo_creates_no_login_outside_development(settings):
    settings.DEBUG = False
    out = StringIO()
    call_command("seed_demo", "--days", "1", "--gpus", "1", stdout=out)
    assert "no demo login" in out.getvalue()
    assert "Bearer" not in out.getvalue()  # nor a token for scraping
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(username="demo").exists()
