"""The backend's one HTTP client (core.http) against a real HTTP server on 127.0.0.1: which
answers are retried, how long it waits (Retry-After as seconds or HTTP-date, capped), and the
pinned connection the webhook SSRF guard relies on."""

from __future__ import annotations

import contextlib
import ipaddress
import math
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ecoreport.core.http import HttpClient, Unreachable

LOOPBACK = ipaddress.ip_address("127.0.0.1")


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    at: float  # time.time() on arrival


@dataclass
class Server:
    url: str
    port: int
    # Answers to give, in order: (status, headers); then 200 {"ok": true}.
    plan: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    stalls: int = 0  # the first requests that get no answer for a second


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="", port=0)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            state.seen.append(Seen(self.command, self.path, dict(self.headers), time.time()))
            if len(state.seen) <= state.stalls:
                time.sleep(1.0)
                status, headers = 200, {}  # too late: the client has timed out
            else:
                status, headers = state.plan.pop(0) if state.plan else (200, {})
            body = b'{"ok": true}' if status == 200 else b"{}"
            with contextlib.suppress(OSError):  # the client gave up (a stalled answer)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        do_GET = do_POST = _answer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    state.url = f"http://127.0.0.1:{state.port}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> HttpClient:
    return HttpClient(retries=2, timeout_s=5, max_wait_s=60, sleep=sleeps.append)


def test_429_with_an_http_date_retry_after_is_retried_at_that_date(server):
    # Real sleeping here: the second request must arrive no earlier than the date given, and
    # not much later (neither the backoff nor the cap).
    when = math.ceil(time.time()) + 2
    server.plan = [(429, {"Retry-After": formatdate(when, usegmt=True)})]
    client = HttpClient(retries=2, timeout_s=5, max_wait_s=60)
    response = client.request("GET", f"{server.url}/data")
    assert (response.status, response.tries, response.json()) == (200, 2, {"ok": True})
    first, second = server.seen
    assert second.at >= when - 0.01
    assert second.at - first.at < 3.5


def test_http_date_retry_after_waits_the_seconds_until_that_date(server, client, sleeps):
    server.plan = [(429, {"Retry-After": formatdate(time.time() + 30, usegmt=True)})]
    assert client.request("GET", f"{server.url}/data").status == 200
    (wait,) = sleeps
    assert 28 < wait <= 30


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        pytest.param("7", [7.0], id="seconds"),
        pytest.param("3600", [60.0], id="seconds-capped"),  # capped at max_wait_s
        pytest.param(formatdate(time.time() + 86400, usegmt=True), [60.0], id="date-capped"),
        pytest.param(formatdate(time.time() - 3600, usegmt=True), [1.0], id="date-past"),
        pytest.param("soon", [1.0], id="garbage"),  # neither: backoff as if absent
    ],
)
def test_retry_after_seconds_and_dates_are_honoured_and_bounded(
    server, client, sleeps, retry_after, expected
):
    server.plan = [(429, {"Retry-After": retry_after})]
    assert client.request("GET", f"{server.url}/data").status == 200
    assert len(server.seen) == 2
    assert sleeps == expected


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_a_bounded_number_of_times(server, client, sleeps, status):
    server.plan = [(status, {})] * 10
    response = client.request("GET", f"{server.url}/data")
    assert (response.status, response.tries) == (status, 3)  # the first try and two retries
    assert len(server.seen) == 3
    assert sleeps == [1.0, 2.0]  # doubling from backoff_s


def test_a_5xx_then_success_is_one_retry(server, client, sleeps):
    server.plan = [(503, {})]
    response = client.request("GET", f"{server.url}/data")
    assert (response.status, response.tries, len(server.seen)) == (200, 2, 2)
    assert sleeps == [1.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_4xx_is_not_retried(server, client, sleeps, status):
    server.plan = [(status, {"Retry-After": "5"})] * 3
    response = client.request("GET", f"{server.url}/data")
    assert (response.status, response.tries) == (status, 1)
    assert len(server.seen) == 1
    assert sleeps == []


def test_a_post_is_tried_once_even_on_503(server, client, sleeps):
    server.plan = [(503, {"Retry-After": "1"})] * 3
    response = client.request("POST", f"{server.url}/hook", body=b"{}")
    assert (response.status, len(server.seen), sleeps) == (503, 1, [])


def test_the_retries_are_one_budget_for_every_kind_of_failure(server, sleeps):
    # A read timeout, then a 503, then a 500: two retries in all, not two of each kind.
    client = HttpClient(retries=2, timeout_s=0.3, sleep=sleeps.append)
    server.stalls = 1
    server.plan = [(503, {}), (500, {})]
    response = client.request("GET", f"{server.url}/data")
    assert (response.status, response.tries, len(server.seen)) == (500, 3, 3)
    assert sleeps == [1.0, 2.0]


def test_a_refused_connection_is_retried_then_unreachable(client, sleeps):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Unreachable, match="NewConnectionError") as raised:
        client.request("GET", f"http://127.0.0.1:{port}/data?token=secret")
    assert "secret" not in str(raised.value)
    assert sleeps == [1.0, 2.0]


def test_a_pinned_request_connects_to_the_address_and_sends_the_urls_host(
    server, client, monkeypatch
):
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def recording_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    url = f"http://hooks.example.com:{server.port}/hook?x=1"
    response = client.request("POST", url, body=b"{}", connect_to=LOOPBACK)
    assert response.status == 200
    assert "hooks.example.com" not in lookups  # the name is never resolved
    (seen,) = server.seen
    assert (seen.path, seen.headers["Host"]) == ("/hook?x=1", f"hooks.example.com:{server.port}")


def test_a_pinned_request_never_follows_a_redirect(server, client):
    server.plan = [(302, {"Location": f"{server.url}/elsewhere"})]
    response = client.request(
        "POST", f"http://hooks.example.com:{server.port}/hook", body=b"", connect_to=LOOPBACK
    )
    assert response.status == 302
    assert [s.path for s in server.seen] == ["/hook"]


def test_an_unpinned_get_follows_a_redirect(server, client):
    server.plan = [(302, {"Location": f"{server.url}/moved"})]
    assert client.request("GET", f"{server.url}/data").status == 200
    assert [s.path for s in server.seen] == ["/data", "/moved"]


def test_the_environments_proxy_is_used_unless_the_connection_is_pinned(
    server, client, monkeypatch
):
    for name in ("no_proxy", "NO_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", server.url)  # the local server plays the proxy
    assert client.request("GET", "http://provider.test/v3/data?zone=FR").status == 200
    assert server.seen[-1].path == "http://provider.test/v3/data?zone=FR"  # proxy form
    url = f"http://hooks.example.com:{server.port}/hook"
    assert client.request("POST", url, body=b"", connect_to=LOOPBACK).status == 200
    assert server.seen[-1].path == "/hook"  # straight to the checked address


def test_only_the_first_bytes_of_a_large_answer_are_read(client):
    received = threading.Event()

    class Big(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.set()
            self.send_response(200)
            self.send_header("Content-Length", str(10 * 1024 * 1024))
            self.end_headers()
            try:
                for _ in range(160):
                    self.wfile.write(b"x" * 65536)
            except OSError:
                pass  # the client hung up after what it wanted

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Big)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://hooks.example.com:{httpd.server_address[1]}/hook"
        response = client.request("POST", url, body=b"{}", connect_to=LOOPBACK, max_body_bytes=1024)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert received.is_set()
    assert (response.status, len(response.body)) == (200, 1024)


@pytest.fixture
def tls_receiver(tmp_path, monkeypatch) -> Iterator[tuple[int, list[str]]]:
    """An https server on 127.0.0.1 whose certificate names hooks.example.com (self-signed, made
    with the openssl command and trusted through SSL_CERT_FILE); records the SNI names asked."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=hooks.example.com"
    subprocess.run(
        [
            *command.split(),
            *("-addext", "subjectAltName=DNS:hooks.example.com"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name) and None

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], names
    httpd.shutdown()
    httpd.server_close()


def test_a_pinned_https_request_checks_the_certificate_against_the_urls_name(tls_receiver, client):
    port, names = tls_receiver
    url = f"https://hooks.example.com:{port}/hook"
    assert client.request("POST", url, body=b"{}", connect_to=LOOPBACK).status == 204
    assert names == ["hooks.example.com"]  # SNI is the name, not the address connected to
    # The same address under a name the certificate does not cover: no request is made.
    with pytest.raises(Unreachable, match="SSLError"):
        client.request(
            "POST", f"https://other.example.com:{port}/hook", body=b"{}", connect_to=LOOPBACK
        )
