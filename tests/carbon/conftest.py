from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def site_agent(cast: Any, make_agent: Any) -> Any:
    """A site factory: ``site_agent("FR", pue="1.25")`` gives (site, agent) with its host there."""
    from ecoreport.carbon.sites import site_create

    def make(
        zone: str, *, pue: str = "1.25", slug: str | None = None, hostname: str | None = None
    ) -> Any:
        slug = slug or f"dc-{zone.lower()}"
        site = site_create(organization=cast.org, slug=slug, name=slug, grid_zone=zone, pue=pue)
        return site, make_agent(cast.org, hostname or f"node-{slug}", site=site)

    return make


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks: Any) -> Any:
    """Runs a write and then what it enqueued on commit (the recompute), like a worker would."""

    def run(fn: Any, **kwargs: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return fn(**kwargs)

    return run
