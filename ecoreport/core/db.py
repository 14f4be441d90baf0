"""Reads for dashboards and reports from a read-only replica, when one is configured.

With ``DATABASE_REPLICA_URL`` set, the ``replica`` database alias exists and code that asks for
it -- the dashboard pages (:func:`reads_from_replica`) and report building
(:func:`replica_reads`) -- reads from it. Everything else reads from the primary, so that ingest,
the rollup and the API see their own writes; and *every* write, inside those blocks too, goes to
the primary (``ReplicaRouter.db_for_write``). A replica lags the primary by its replication
delay: pages and reports may be that much behind, never wrong about what they show.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections

REPLICA = "replica"

_use_replica: contextvars.ContextVar[bool] = contextvars.ContextVar("use_replica", default=False)

F = TypeVar("F", bound=Callable[..., Any])


def replica_configured() -> bool:
    return REPLICA in connections.settings


@contextmanager
def replica_reads() -> Iterator[None]:
    """Within the block, ORM reads go to the replica when one is configured."""
    token = _use_replica.set(True)
    try:
        yield
    finally:
        _use_replica.reset(token)


def reads_from_replica(view: F) -> F:
    """A view whose ORM reads go to the replica (a read-only page)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with replica_reads():
            return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


class ReplicaRouter:
    """``DATABASE_ROUTERS`` entry: reads inside :func:`replica_reads` to the replica; writes,
    migrations and everything else to the primary."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        if _use_replica.get() and replica_configured():
            return REPLICA
        return DEFAULT_DB_ALIAS

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the replica is a copy of the primary: the same rows

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS  # the replica gets its schema by replication
