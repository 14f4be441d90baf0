"""Webhook transport that cannot be pointed at the inside of the network (SSRF).

A webhook URL is chosen by an organization admin, and the worker that posts to it sits next to
the database, Redis and the cloud's metadata service. So a destination is refused unless every
address it resolves to is a public (globally routable) unicast address, or lies in one of the
networks an operator allowed explicitly with ``WEBHOOK_ALLOWED_NETWORKS``.

The check and the connection use the same addresses: the name is resolved once, each address is
checked, and the socket is opened to a checked address, never by name again (a second lookup
could answer differently: DNS rebinding). The request still carries the URL's host name in its
``Host`` header and, for https, in TLS SNI and the certificate check. Redirects are never
followed: a 3xx is a failed delivery. The request itself goes through the backend's one HTTP
client (``core.http``, ``connect_to``), which does no DNS lookup and uses no proxy there.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

from django.conf import settings

from ecoreport.core.http import HttpClient, Unreachable, retry_after_s

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names that mean an internal service whatever DNS says about them: refused at registration
# without a lookup, as if they resolved to these addresses.
KNOWN_INTERNAL_NAMES: dict[str, tuple[str, ...]] = {
    "localhost": ("127.0.0.1", "::1"),
    "metadata.google.internal": ("169.254.169.254",),
    "metadata.goog": ("169.254.169.254",),
    "metadata": ("169.254.169.254",),
    "instance-data": ("169.254.169.254",),
    "instance-data.ec2.internal": ("169.254.169.254",),
}

# What users see in the delivery log: never the socket error, which would tell an admin which
# internal ports are open.
REFUSED = "refused: destination not allowed"
FAILED = "failed: no HTTP answer"


# The longest wait a receiver's Retry-After can impose on the next attempt: the delivery
# backoff's own cap.
MAX_RETRY_AFTER_S = 3600.0


class PostResult(NamedTuple):
    status: int | None  # None: refused, or no HTTP answer
    error: str  # for the delivery log; blank on 2xx
    retry_after_s: float | None = None  # what a 429 or 503 asked for, capped
    # The destination is not allowed: trying again cannot succeed until the URL or the
    # allow-list changes, so the delivery fails at once instead of retrying.
    final: bool = False


class DestinationRefused(Exception):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


class DestinationUnresolved(DestinationRefused):
    """The URL's host has no address now: a DNS failure may pass, so delivery retries."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    path: str


def parse_destination(url: str) -> Destination:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused(f"not an http(s) URL: {url!r}")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise DestinationRefused("bad port") from exc
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Destination(scheme, parts.hostname.rstrip(".").lower(), port, path)


@lru_cache(maxsize=8)
def _allowed_networks(spec: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in spec)


def allowed_networks() -> tuple[IPNetwork, ...]:
    return _allowed_networks(tuple(settings.WEBHOOK_ALLOWED_NETWORKS))


def address_problem(address: IPAddress) -> str | None:
    """Why webhooks may not reach ``address``, or None when they may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in net for net in allowed_networks()):
        return None
    for what, flag in (
        ("a loopback", address.is_loopback),
        ("a link-local (cloud metadata)", address.is_link_local),
        ("an unspecified", address.is_unspecified),
        ("a multicast", address.is_multicast),
        ("a private", address.is_private),
        ("a reserved", address.is_reserved),
    ):
        if flag:
            return f"{address} is {what} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def registration_problem(url: str) -> str | None:
    """Why ``url`` cannot be registered as a webhook, checked without a DNS lookup (the name
    may not resolve yet; delivery resolves and checks again)."""
    try:
        dest = parse_destination(url)
    except DestinationRefused:
        return None  # the URL validator reports malformed URLs
    host = dest.host
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    elif host in KNOWN_INTERNAL_NAMES:
        addresses = [ipaddress.ip_address(a) for a in KNOWN_INTERNAL_NAMES[host]]
    elif host.endswith(".localhost"):  # RFC 6761: always loopback
        addresses = [ipaddress.ip_address("127.0.0.1")]
    else:
        return None
    for address in addresses:
        problem = address_problem(address)
        if problem:
            return f"webhooks may not reach internal addresses ({host}: {problem})"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses of ``host``; a literal address is itself. Tests replace this function to
    play DNS; the checks below are the same either way."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def checked_addresses(dest: Destination) -> list[IPAddress]:
    """The addresses to connect to; refuses the destination if any of them is not allowed, so
    a name with one public and one internal address cannot be used to reach the inside."""
    if dest.host in KNOWN_INTERNAL_NAMES:
        addresses = [ipaddress.ip_address(a) for a in KNOWN_INTERNAL_NAMES[dest.host]]
    elif dest.host.endswith(".localhost"):
        addresses = [ipaddress.ip_address("127.0.0.1")]
    else:
        try:
            addresses = resolve(dest.host, dest.port)
        except OSError as exc:
            raise DestinationUnresolved(f"{dest.host} does not resolve") from exc
    if not addresses:
        raise DestinationUnresolved(f"{dest.host} has no address")
    for address in addresses:
        problem = address_problem(address)
        if problem:
            raise DestinationRefused(f"{dest.host}: {problem}")
    return list(dict.fromkeys(addresses))


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> PostResult:
    """HTTP status, error for the delivery log, and Retry-After of one POST.

    The log's error is one of a few fixed phrases (plus the HTTP status): which address was
    refused, or why a connection failed, goes to the server log only."""
    try:
        dest = parse_destination(url)
        addresses = checked_addresses(dest)
    except DestinationUnresolved as exc:
        log.warning("webhook.unresolved reason=%r", str(exc))
        return PostResult(None, FAILED)
    except DestinationRefused as exc:
        log.warning("webhook.refused reason=%r", str(exc))
        return PostResult(None, REFUSED, final=True)
    # One try per address (a POST is not retried in-process: the delivery row counts attempts
    # and backs off); the next checked address is tried only when there was no HTTP answer.
    client = HttpClient(retries=0, timeout_s=timeout)
    last_error = "-"
    for address in addresses:
        try:
            response = client.request(
                "POST",
                url,
                headers=headers,
                body=body,
                connect_to=address,
                # A little of the body, so the receiver sees a clean close.
                max_body_bytes=64 * 1024,
            )
        except Unreachable as exc:
            last_error = str(exc).split(":", 1)[0]
            continue
        status = response.status
        if 200 <= status < 300:
            return PostResult(status, "")
        if 300 <= status < 400:
            return PostResult(status, f"HTTP {status}: failed (redirects are not followed)")
        wait = None
        if status in (429, 503):
            wait = retry_after_s(response.headers, max_s=MAX_RETRY_AFTER_S)
        return PostResult(status, f"HTTP {status}: failed", wait)
    log.warning("webhook.failed host=%s error=%s", dest.host, last_error)
    return PostResult(None, FAILED)
