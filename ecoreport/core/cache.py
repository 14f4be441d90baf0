"""A Redis cache that degrades instead of failing the request when Redis is unreachable.

Everything EcoReport keeps in the cache can be lost: throttle counters, the rollup debounce key,
computed dashboard figures. So when Redis does not answer, reads miss, writes are dropped and
the request goes on. After a failure the backend does not try Redis again for
``FAIL_SOFT_RETRY_S`` seconds, so an outage costs one connection attempt per process per
window, not one per cache call; the warning is logged once per window, not once per call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

T = TypeVar("T")

UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class FailSoftRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS") or {})
        self.retry_s = float(options.pop("FAIL_SOFT_RETRY_S", 5.0))
        super().__init__(server, {**params, "OPTIONS": options})
        self._down_until = 0.0

    def is_down(self) -> bool:
        """True while a recent call found Redis unreachable (callers may fall back locally)."""
        return time.monotonic() < self._down_until

    def _soft(self, op: str, default: T, call: Callable[[], T]) -> T:
        if self.is_down():
            return default
        try:
            return call()
        except UNAVAILABLE as error:
            self._down_until = time.monotonic() + self.retry_s
            log.warning(
                "cache.unavailable op=%s retry_in_s=%.0f error=%r: going on without the cache",
                op,
                self.retry_s,
                str(error),
            )
            return default

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._soft(
            "get", default, lambda: super(FailSoftRedisCache, self).get(key, default, version)
        )

    def get_many(self, keys: Any, version: int | None = None) -> dict[str, Any]:
        return self._soft(
            "get_many", {}, lambda: super(FailSoftRedisCache, self).get_many(keys, version)
        )

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._soft(
            "has_key", False, lambda: super(FailSoftRedisCache, self).has_key(key, version)
        )

    def add(self, key: Any, value: Any, timeout: Any = 300, version: int | None = None) -> bool:
        # False ("already there") is the answer that makes callers do the least: the rollup
        # debounce skips an enqueue the periodic sweep covers anyway.
        return self._soft(
            "add", False, lambda: super(FailSoftRedisCache, self).add(key, value, timeout, version)
        )

    def set(self, key: Any, value: Any, timeout: Any = 300, version: int | None = None) -> None:
        self._soft(
            "set", None, lambda: super(FailSoftRedisCache, self).set(key, value, timeout, version)
        )

    def set_many(
        self, data: dict[Any, Any], timeout: Any = 300, version: int | None = None
    ) -> list[Any]:
        return self._soft(
            "set_many",
            list(data),
            lambda: super(FailSoftRedisCache, self).set_many(data, timeout, version),
        )

    def touch(self, key: Any, timeout: Any = 300, version: int | None = None) -> bool:
        return self._soft(
            "touch", False, lambda: super(FailSoftRedisCache, self).touch(key, timeout, version)
        )

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._soft(
            "delete", False, lambda: super(FailSoftRedisCache, self).delete(key, version)
        )

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        self._soft(
            "delete_many", None, lambda: super(FailSoftRedisCache, self).delete_many(keys, version)
        )

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        def call() -> int:
            return super(FailSoftRedisCache, self).incr(key, delta, version)

        missing = object()
        value = self._soft("incr", missing, call)
        if value is missing:
            # What a missing key answers: callers already handle it (add, then incr).
            raise ValueError(f"Key {key!r} not found (the cache is unavailable)")
        return value  # type: ignore[return-value]

    def clear(self) -> None:
        self._soft("clear", None, lambda: super(FailSoftRedisCache, self).clear())


def is_down(cache: Any) -> bool:
    """Whether ``cache`` is a fail-soft cache in an outage window (never for local caches)."""
    check = getattr(cache, "is_down", None)
    return bool(check and check())
