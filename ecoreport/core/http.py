"""The backend's one HTTP client for outbound calls: grid-intensity providers and alert webhooks.

Built on urllib3 (its connection pools and ``Retry``) instead of a retry loop per caller:

- Bounded retries, only where another try can help: 429 and 5xx answers, and connection or
  read failures. Other answers (4xx, 2xx, 3xx not followed) come back at once.
- ``Retry-After`` is honoured, as seconds or as an HTTP-date (RFC 9110), capped at
  ``max_wait_s``; without it, or when it cannot be parsed, the wait doubles from ``backoff_s``.
- Only idempotent methods are retried (urllib3's default): a POST is tried once, and its
  caller (alert delivery) keeps its own attempt count and backoff on a database row.
- ``connect_to`` pins the TCP connection to one address already checked by the caller (the
  webhook SSRF guard): the URL's name is then used only for the ``Host`` header and, for https,
  TLS SNI and the certificate check; no DNS lookup, no proxy, no redirect.
- Without ``connect_to``, proxies come from the environment (``HTTPS_PROXY``, ``NO_PROXY``
  ...), as they did with urllib.request, and redirects are followed (at most 10).

The waits go through ``sleep`` so tests can record them instead of sleeping.
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError, InvalidHeader, MaxRetryError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# 429 and every 5xx: the server asks to come back later or failed on its side.
RETRY_STATUSES = frozenset({429, *range(500, 600)})
MAX_REDIRECTS = 10


class Unreachable(Exception):
    """No HTTP answer (refused, reset, timed out) after the retries. The message names the
    failure, never the URL's query string."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    tries: int

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class _Retry(Retry):
    """urllib3's ``Retry`` with three changes: waits go through an injectable ``sleep``; the
    first retry without ``Retry-After`` already waits ``backoff_s`` (then 2x, 4x ...); and the
    retry count is one budget for every kind of failure, as the loops it replaces had."""

    sleep_fn: Callable[[float], None] = time.sleep
    # Retries of any kind together (refused, timed out, 429, 5xx); redirects are counted apart.
    max_failures: int = 0

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.sleep_fn, retry.max_failures = self.sleep_fn, self.max_failures
        return retry

    def is_exhausted(self) -> bool:
        failures = sum(1 for entry in self.history if entry.redirect_location is None)
        return failures > self.max_failures or super().is_exhausted()

    def get_backoff_time(self) -> float:
        errors = 0
        for entry in reversed(self.history):
            if entry.redirect_location is not None:
                break
            errors += 1
        if errors == 0:
            return 0.0
        return float(min(self.backoff_factor * 2 ** (errors - 1), self.backoff_max))

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        wait: float | None = None
        if response is not None and self.respect_retry_after_header:
            try:
                wait = self.get_retry_after(response)  # seconds or HTTP-date, capped
            except InvalidHeader:
                wait = None  # garbage in the header: back off as if it were absent
        if not wait:
            wait = self.get_backoff_time()
        if wait > 0:
            self.sleep_fn(wait)


def retry_after_s(headers: Mapping[str, str], *, max_s: float) -> float | None:
    """The wait a ``Retry-After`` header asks for, in seconds (it may be seconds or an
    HTTP-date), capped at ``max_s``; None when absent or unreadable. For callers that retry
    later by other means (a webhook delivery re-enqueued with a countdown)."""
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return float(Retry(retry_after_max=max(int(max_s), 0)).parse_retry_after(raw))
    except InvalidHeader:
        return None


def _host_header(host: str, port: int, scheme: str) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port == (443 if scheme == "https" else 80) else f"{name}:{port}"


class HttpClient:
    def __init__(
        self,
        *,
        retries: int,
        timeout_s: float,
        backoff_s: float = 1.0,
        max_wait_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retries = retries
        self.timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
        self.backoff_s, self.max_wait_s, self.sleep = backoff_s, max_wait_s, sleep
        self._direct = urllib3.PoolManager(timeout=self.timeout)
        self._proxies: dict[str, urllib3.ProxyManager] = {}

    def _retry(self, *, follow_redirects: bool) -> Retry:
        retry = _Retry(
            total=None,  # bounded by max_failures (all kinds together) and redirect
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            other=self.retries,
            redirect=MAX_REDIRECTS if follow_redirects else False,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.backoff_s,
            backoff_max=self.max_wait_s,
            retry_after_max=max(int(self.max_wait_s), 0),
            respect_retry_after_header=True,
            raise_on_status=False,  # the last answer comes back; the caller words the error
        )
        retry.sleep_fn, retry.max_failures = self.sleep, self.retries
        return retry

    def _manager(self, url: str) -> urllib3.PoolManager:
        parts = urlsplit(url)
        proxy = urllib.request.getproxies().get(parts.scheme)
        if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
            return self._direct
        if proxy not in self._proxies:
            self._proxies[proxy] = urllib3.ProxyManager(proxy, timeout=self.timeout)
        return self._proxies[proxy]

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        connect_to: IPAddress | None = None,
        max_body_bytes: int | None = None,
    ) -> Response:
        """One request with the retries above; any HTTP status comes back as a Response.

        ``max_body_bytes`` reads at most that much of the answer (a webhook receiver's body is
        of no interest beyond a clean close)."""
        headers = dict(headers or {})
        try:
            if connect_to is None:
                response = self._manager(url).request(
                    method,
                    url,
                    headers=headers,
                    body=body,
                    retries=self._retry(follow_redirects=True),
                    preload_content=max_body_bytes is None,
                )
                return self._read(response, max_body_bytes)
            return self._pinned(method, url, headers, body, connect_to, max_body_bytes)
        except MaxRetryError as exc:
            raise Unreachable(f"{type(exc.reason).__name__}: {exc.reason}") from None
        except (HTTPError, OSError) as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from None

    def _pinned(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        address: IPAddress,
        max_body_bytes: int | None,
    ) -> Response:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").rstrip(".").lower()
        port = parts.port or (443 if scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers.setdefault("Host", _host_header(host, port, scheme))
        pool: urllib3.HTTPConnectionPool
        if scheme == "https":
            # The socket goes to the checked address; SNI and the certificate check use the name.
            pool = urllib3.HTTPSConnectionPool(
                str(address),
                port,
                timeout=self.timeout,
                maxsize=1,
                cert_reqs="CERT_REQUIRED",
                server_hostname=host,
                assert_hostname=host,
            )
        else:
            pool = urllib3.HTTPConnectionPool(str(address), port, timeout=self.timeout, maxsize=1)
        with pool:
            response = pool.urlopen(
                method,
                path,
                body=body,
                headers=headers,
                retries=self._retry(follow_redirects=False),
                redirect=False,
                assert_same_host=False,
                preload_content=max_body_bytes is None,
            )
            return self._read(response, max_body_bytes)

    @staticmethod
    def _read(response: BaseHTTPResponse, max_body_bytes: int | None) -> Response:
        retries = response.retries
        tries = 1 + (len(retries.history) if retries is not None else 0)
        if max_body_bytes is None:
            body = response.data
        else:
            try:
                body = response.read(max_body_bytes)
            finally:
                response.close()  # not drained: the rest of a large body is not read
        return Response(response.status, response.headers, body, tries)
