"""Fixtures for the agent tests; the fakes themselves are in agent_fakes.py.

Nothing here imports Django or the backend: these tests also run on Python 3.9 with only the
agent installed (``pip install ./agents pytest``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_fakes import FakeClock, IngestServer, WrongSite
from ecoreport_agent.spool import Spool


@pytest.fixture
def ingest() -> Iterator[IngestServer]:
    server = IngestServer()
    yield server
    server.down()


@pytest.fixture
def wrong_site() -> Iterator[WrongSite]:
    site = WrongSite()
    yield site
    site.down()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(str(tmp_path / "spool.db"))
    yield s
    s.close()


# The backend's tests/conftest.py has autouse fixtures that touch Django (cache, Celery). The
# agent never imports the backend, so its tests replace them with no-ops of the same names: they
# pass without Django settings, and on Python 3.9 they run with --confcutdir=tests/agent.
@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    yield


@pytest.fixture(autouse=True)
def _eager_celery() -> Iterator[None]:
    yield
