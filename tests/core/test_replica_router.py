"""The read replica (DATABASE_REPLICA_URL): dashboard pages read from it, every write goes to
the primary. Run against two real PostgreSQL databases: the test database, and a copy of it made
with ``CREATE DATABASE ... TEMPLATE`` standing in for a streaming replica."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from ecoreport.core.db import REPLICA, ReplicaRouter, replica_reads
from ecoreport.organizations.models import Team
from tests.conftest import make_batch, make_sample


def test_without_a_replica_everything_is_the_primary():
    router = ReplicaRouter()
    with replica_reads():
        assert router.db_for_read(Team) == "default"
    assert router.db_for_write(Team) == "default"
    assert router.allow_migrate("default", "organizations") is True
    assert router.allow_migrate(REPLICA, "organizations") is False


def _admin_dsn() -> str:
    conf = connection.settings_dict
    return (
        f"host={conf['HOST'] or '127.0.0.1'} port={conf['PORT'] or 5432} "
        f"user={conf['USER']} dbname=postgres"
    )


@pytest.fixture
def replica_of_now(transactional_db):
    """Call it to copy the test database, as it is, into a replica database and configure the
    ``replica`` alias for it; dropped at the end."""
    if connection.vendor != "postgresql":
        pytest.skip("a replica is a PostgreSQL set-up; the embedded SQLite has none")
    import psycopg

    name = f"{connection.settings_dict['NAME']}_replica_{uuid.uuid4().hex[:6]}"
    made = []

    def make() -> None:
        connections.close_all()  # a template database must have no other session
        with psycopg.connect(_admin_dsn(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{connection.settings_dict["NAME"]}"')
        made.append(name)
        conf = copy.deepcopy(connections.settings["default"])
        conf["NAME"] = name
        conf["CONN_MAX_AGE"] = None  # one persistent session for the whole test
        connections.settings[REPLICA] = conf
        # Connected here, explicitly: the test case only lets aliases it was set up with open
        # connections lazily, and this one did not exist yet.
        connections[REPLICA].connect()

    yield make
    if REPLICA in connections.settings:
        connections[REPLICA].close()
        del connections[REPLICA]
        del connections.settings[REPLICA]
    if made:
        with psycopg.connect(_admin_dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_pages_read_the_replica_and_every_write_goes_to_the_primary(
    client, cast, agent, post_batch, replica_of_now
):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    samples = [
        make_sample(
            start=start + timedelta(minutes=10 * i),
            seconds=600,
            energy_j=600 * 300.0,
            attribution=[{"share": 1.0, "team": "nlp", "project": "llm"}],
        )
        for i in range(6)
    ]
    assert post_batch(agent.token, make_batch(samples)).json()["accepted"] == 6
    Team.objects.filter(organization=cast.org, slug="nlp").update(name="Language (replica)")
    replica_of_now()
    # After the copy the primary moves on; the replica has not caught up yet.
    Team.objects.filter(organization=cast.org, slug="nlp").update(name="Language (primary)")
    client.force_login(cast.owner.user)

    page = client.get("/teams/nlp/").content.decode()
    assert "Language (replica)" in page and "Language (primary)" not in page

    # Inside a replica block, writes still go to the primary.
    with replica_reads():
        Team.objects.create(organization=cast.org, slug="written", name="Written")
        assert not Team.objects.filter(slug="written").exists()  # read: the replica
    assert Team.objects.filter(slug="written").exists()  # read: the primary
    assert not Team.objects.using(REPLICA).filter(slug="written").exists()

    # The API reads its own writes: the primary.
    window = f"start={start:%Y-%m-%dT%H:00:00Z}&end={start + timedelta(hours=4):%Y-%m-%dT%H:00:00Z}"
    response = client.get(
        f"/api/v1/usage?group_by=team&{window}", HTTP_AUTHORIZATION=f"Bearer {cast.owner_token}"
    )
    assert response.status_code == 200, response.content
    names = {r["team"]: r["team_name"] for r in response.json()["rows"]}
    assert names["nlp"] == "Language (primary)"


def test_without_the_alias_the_same_page_reads_the_primary(client, cast, agent, post_batch):
    Team.objects.create(organization=cast.org, slug="nlp", name="Language (primary)")
    client.force_login(cast.owner.user)
    page = client.get("/teams/nlp/").content.decode()
    assert "Language (primary)" in page
