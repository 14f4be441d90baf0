"""Uploads spooled batches to ``POST /api/v1/ingest`` (urllib, gzip, idempotent batch ids).

Retry policy:
- network errors, timeouts and 5xx: exponential backoff with full jitter (uniform in
  [0, min(cap, base * 2**n)]) so a fleet that lost the backend at once does not return at once;
- 429: wait what ``Retry-After`` says;
- 401: keep measuring and spooling (nothing is lost), log ONE error until a request succeeds
  again, retry slowly;
- 413: return the batch's samples to the pool and send smaller batches;
- 400: the batch is malformed for this backend and retrying cannot fix it: dead letter;
- a poison batch (one the backend fails on with the same 5xx, ``max_batch_tries`` times in a
  row): set aside so the batches after it go on. Once the backend has acknowledged another
  batch, the suspect is sent once more; the same 5xx again means the batch, not the backend, is
  the problem, and it is dead-lettered (kept in the spool's ``dead_letter`` table with the
  reason). A backend that fails on every batch dead-letters nothing: no batch ever gets
  through to prove the others are poison. ``503`` (the backend's "unavailable, retry") never
  counts; its ``Retry-After`` is honoured.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecoreport_agent import __version__
from ecoreport_agent.spool import Spool

log = logging.getLogger("ecoreport_agent.upload")

INGEST_PATH = "/api/v1/ingest"
PING_PATH = "/api/v1/agent/ping"


@dataclass
class Response:
    status: int  # 0: no HTTP answer (connection refused, timeout, DNS ...)
    body: bytes
    headers: dict[str, str]
    error: str = ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hands a 3xx back as the answer instead of following it.

    The agent talks to one configured server. A redirect means the URL is wrong (a path such as
    ``/admin``, http where the server wants https, a login page in front of it), and following
    it would turn the ingest POST into a GET of some other page whose 200 proves nothing.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)  # keeps the proxy handlers (https_proxy)


def http_request(
    url: str,
    *,
    method: str,
    token: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 15.0,
) -> Response:
    """One HTTP request with the standard library; never raises for HTTP or network errors.

    Redirects are not followed: a 3xx comes back as its status, with its ``location`` header.
    """
    all_headers = {
        "Authorization": f"Bearer {token}",
        "User-Agent": f"ecoreport-agent/{__version__}",
        "Accept": "application/json",
    }
    all_headers.update(headers or {})
    request = urllib.request.Request(url, data=body, headers=all_headers, method=method)  # noqa: S310 - URL is the operator's configured server
    try:
        with _OPENER.open(request, timeout=timeout_s) as reply:
            return Response(
                reply.status, reply.read(), {k.lower(): v for k, v in reply.headers.items()}
            )
    except urllib.error.HTTPError as exc:
        try:
            payload = exc.read()
        except OSError:
            payload = b""
        return Response(exc.code, payload, {k.lower(): v for k, v in (exc.headers or {}).items()})
    except (urllib.error.URLError, OSError, socket.timeout) as exc:
        reason = getattr(exc, "reason", exc)
        return Response(0, b"", {}, error=str(reason))


def retry_after_seconds(value: str | None, now_wall: float) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_wall)


Transport = Callable[..., Response]


class Uploader:
    def __init__(
        self,
        *,
        spool: Spool,
        server: str,
        token: str,
        hostname: str,
        batch_size: int = 1000,
        transport: Transport = http_request,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        backoff_base_s: float = 2.0,
        backoff_cap_s: float = 300.0,
        auth_retry_s: float = 300.0,
        max_batch_tries: int = 5,
    ) -> None:
        self.spool = spool
        self.url = server.rstrip("/") + INGEST_PATH
        self.token = token
        self.hostname = hostname
        self.batch_size = batch_size
        self.transport = transport
        self.monotonic = monotonic
        self.wall = wall
        self.rng = rng or random.Random()
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.auth_retry_s = auth_retry_s
        self.failures = 0  # consecutive network/5xx failures, drives the backoff
        self.next_attempt_mono = 0.0
        self.auth_failed = False
        self.throttled = False  # the server said "Retry-After"; honour it even at shutdown
        self.requests = 0
        self.max_batch_tries = max_batch_tries
        # batch id -> (status, consecutive tries that got it); in memory: a restart gives a
        # suspect its tries again, which delays a dead letter but never causes one.
        self._same_5xx: dict[str, tuple[int, int]] = {}
        self.suspects: list[str] = []  # oldest first
        self._verdict_due = False  # another batch was acknowledged since a batch became suspect

    # -- policy ---------------------------------------------------------------------------------

    def ready(self) -> bool:
        return self.monotonic() >= self.next_attempt_mono

    def _backoff(self) -> float:
        self.failures += 1
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * (2 ** min(self.failures, 30)))
        delay = self.rng.uniform(0, ceiling)
        self.next_attempt_mono = self.monotonic() + delay
        return delay

    def _record_error(self, message: str) -> None:
        self.spool.meta_set(last_error=message, last_error_s=self.wall())

    # -- work -----------------------------------------------------------------------------------

    def flush(self, budget_s: float = 5.0) -> int:
        """Send batches until the spool is empty, a request fails, or ``budget_s`` is spent.

        Returns the number of batches acknowledged.
        """
        started = self.monotonic()
        acked = 0
        while self.ready() and self.monotonic() - started <= budget_s:
            outcome = self.upload_once()
            if outcome == "acked":
                acked += 1
            elif outcome in ("split", "dead_letter", "suspect"):
                continue
            else:  # "empty", or a failure that set next_attempt_mono
                break
        return acked

    def final_flush(self, budget_s: float = 5.0) -> int:
        """At shutdown: one more try even while backing off from a network error.

        The server may well be back; the samples would otherwise wait for the next start. Not
        when it refused the token or asked us to wait: that answer stands.
        """
        if self.auth_failed or (self.throttled and not self.ready()):
            return 0
        self.next_attempt_mono = 0.0
        return self.flush(budget_s)

    def _body(self, batch: Any) -> bytes:
        # The sample JSON was rendered when it was booked; the batch is assembled from text, which
        # costs far less CPU than decoding and re-encoding a thousand samples.
        agent = json.dumps({"hostname": self.hostname, "version": __version__})
        gpus = ",".join(self.spool.inventory(batch.gpu_uuids))
        text = (
            f'{{"batch_id":"{batch.batch_id}","agent":{agent},"gpus":[{gpus}],'
            f'"samples":[{",".join(batch.payloads)}]}}'
        )
        return gzip.compress(text.encode(), compresslevel=6)

    def _pick(self) -> tuple[Any, bool]:
        """The next batch, and whether it is a suspect's deciding try."""
        if self.suspects and self._verdict_due:
            batch = self.spool.next_batch(self.batch_size, skip=self.suspects[1:])
            if batch is not None and batch.batch_id == self.suspects[0]:
                return batch, True
            if batch is not None:
                return batch, False
        batch = self.spool.next_batch(self.batch_size, skip=self.suspects)
        if batch is None and self.suspects:
            # Nothing else to send: retry the suspect (it may go through), but with no other
            # batch acknowledged in between, its failure proves nothing.
            batch = self.spool.next_batch(self.batch_size)
        return batch, False

    def upload_once(self) -> str:
        batch, deciding = self._pick()
        if batch is None:
            return "empty"
        body = self._body(batch)
        self.requests += 1
        reply = self.transport(
            self.url,
            method="POST",
            token=self.token,
            body=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        status = reply.status
        answer = json_object(reply) if status == 200 else None
        if answer is not None and "accepted" in answer:
            return self._acked(batch, answer)
        if status in (400, 413):  # the batch leaves the queue (dead letter or split) either way
            self._same_5xx.pop(batch.batch_id, None)
            if batch.batch_id in self.suspects:
                self.suspects.remove(batch.batch_id)
        if status == 401 or status == 403:
            if not self.auth_failed:
                log.error(
                    "upload.unauthorized status=%d url=%s detail=%r: the server refused the agent"
                    " token; measuring and spooling go on, uploads are retried every %.0f s."
                    " Check the token (ECOREPORT_TOKEN / --token-file).",
                    status,
                    self.url,
                    _error_text(reply.body),
                    self.auth_retry_s,
                )
                self._record_error(f"HTTP {status}: token refused")
            self.auth_failed = True
            self.next_attempt_mono = self.monotonic() + self.auth_retry_s
            return "unauthorized"
        if status == 429:
            delay = retry_after_seconds(reply.headers.get("retry-after"), self.wall())
            if delay is None:
                delay = self._backoff()
            else:
                self.next_attempt_mono = self.monotonic() + delay
            self.throttled = True
            log.warning("upload.throttled status=429 retry_in_s=%.1f", delay)
            return "throttled"
        if status == 413:
            if len(batch.sample_ids) > 1:
                self.batch_size = max(1, len(batch.sample_ids) // 2)
                self.spool.split_batch(batch)
                log.warning(
                    "upload.too_large samples=%d new_batch_size=%d",
                    len(batch.sample_ids),
                    self.batch_size,
                )
                return "split"
            self.spool.dead_letter_batch(batch, "HTTP 413: a single sample is too large")
            log.error("upload.dead_letter batch_id=%s reason=413-single-sample", batch.batch_id)
            return "dead_letter"
        if status == 400:
            reason = f"HTTP 400: {_error_text(reply.body)}"
            self.spool.dead_letter_batch(batch, reason)
            self._record_error(reason)
            log.error(
                "upload.malformed batch_id=%s samples=%d detail=%s: moved to the dead-letter table",
                batch.batch_id,
                len(batch.sample_ids),
                reason,
            )
            return "dead_letter"
        # 0 (network), 5xx, and anything unexpected (404 from a wrong URL, a proxy's 502 ...):
        # retry with backoff, the same batch id.
        # A 200 that is not the ingest answer (a proxy's or another site's page) acknowledges
        # nothing: the samples stay in the spool.
        detail = reply.error or describe_unexpected(reply)
        if 500 <= status <= 599 and status != 503:
            outcome = self._poison_check(batch, status, detail, reply, deciding)
            if outcome:
                return outcome
        delay = self._backoff()
        if status == 503:
            # The backend's own "unavailable, retry in N s" (a database outage): no sooner.
            retry_after = retry_after_seconds(reply.headers.get("retry-after"), self.wall())
            if retry_after is not None:
                self.throttled = True  # an answer that stands, even for the shutdown flush
                if retry_after > delay:
                    delay = retry_after
                    self.next_attempt_mono = self.monotonic() + delay
        self._record_error(detail)
        log.warning(
            "upload.failed batch_id=%s status=%d detail=%r attempt=%d retry_in_s=%.1f",
            batch.batch_id,
            status,
            detail,
            batch.attempts,
            delay,
        )
        return "failed"

    def _poison_check(
        self, batch: Any, status: int, detail: str, reply: Response, deciding: bool
    ) -> str | None:
        """Counts a batch's same-5xx failures; returns an outcome when it sets it aside."""
        previous, count = self._same_5xx.get(batch.batch_id, (status, 0))
        count = count + 1 if previous == status else 1
        self._same_5xx[batch.batch_id] = (status, count)
        if deciding and batch.batch_id in self.suspects and previous == status:
            reason = (
                f"HTTP {status} {count} times, while the server accepted other batches:"
                f" {_error_text(reply.body) or detail}"
            )
            self.spool.dead_letter_batch(batch, reason)
            self.suspects.remove(batch.batch_id)
            self._same_5xx.pop(batch.batch_id, None)
            self._verdict_due = False
            self._record_error(f"batch {batch.batch_id} dead-lettered: {reason}")
            log.error(
                "upload.poison batch_id=%s samples=%d status=%d tries=%d: moved to the"
                " dead-letter table, the next batches go on",
                batch.batch_id,
                len(batch.sample_ids),
                status,
                count,
            )
            return "dead_letter"
        if deciding:
            self._verdict_due = False  # failed differently: wait for another acknowledgement
        if count >= self.max_batch_tries and batch.batch_id not in self.suspects:
            self.suspects.append(batch.batch_id)
            self._record_error(f"HTTP {status} {count} times for batch {batch.batch_id}")
            log.warning(
                "upload.suspect batch_id=%s status=%d tries=%d: set aside, the next batches go"
                " first; dead-lettered if it fails the same way after one of them is accepted",
                batch.batch_id,
                status,
                count,
            )
            return "suspect"
        return None

    def _acked(self, batch: Any, answer: dict[str, Any]) -> str:
        rejected: dict[int, str] = {}
        for item in answer.get("rejected") or []:
            try:
                index = int(item.get("index"))
            except (TypeError, ValueError, AttributeError):
                continue
            rejected[index] = f"{item.get('field')}: {item.get('error')}"
        self.spool.ack_batch(batch, rejected)
        self._same_5xx.pop(batch.batch_id, None)
        if batch.batch_id in self.suspects:
            self.suspects.remove(batch.batch_id)
        elif self.suspects:
            self._verdict_due = True
        if rejected:
            log.warning(
                "upload.rejected batch_id=%s rejected=%d first=%r",
                batch.batch_id,
                len(rejected),
                next(iter(rejected.values())),
            )
        if self.auth_failed:
            log.info("upload.authorized_again")
        self.auth_failed = False
        self.throttled = False
        self.failures = 0
        self.next_attempt_mono = 0.0
        log.debug(
            "upload.acked batch_id=%s samples=%d accepted=%s duplicates=%s",
            batch.batch_id,
            len(batch.sample_ids),
            answer.get("accepted"),
            answer.get("duplicates"),
        )
        return "acked"


def json_object(reply: Response) -> dict[str, Any] | None:
    """The answer's JSON object, or None when it is not JSON (an HTML page, a proxy's text)."""
    if "json" not in reply.headers.get("content-type", "").lower():
        return None
    try:
        parsed = json.loads(reply.body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def describe_unexpected(reply: Response) -> str:
    """An answer that is not the one asked for, in words: its status, and where it points."""
    if 300 <= reply.status <= 399:
        return f"HTTP {reply.status} redirect to {reply.headers.get('location') or '(no location)'}"
    if reply.status == 200:
        kind = reply.headers.get("content-type") or "no content type"
        return f"HTTP 200 that is not an EcoReport answer ({kind.split(';')[0].strip()})"
    return f"HTTP {reply.status}"


def _error_text(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(parsed, dict) and "error" in parsed:
        return json.dumps(parsed["error"])[:500]
    return json.dumps(parsed)[:500]


def ping(server: str, token: str, timeout_s: float = 10.0) -> Response:
    return http_request(
        server.rstrip("/") + PING_PATH, method="GET", token=token, timeout_s=timeout_s
    )
