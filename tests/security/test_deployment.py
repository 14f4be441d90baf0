"""Deployment hardening: with DEBUG off, HTTPS is enforced (redirect, HSTS, secure cookies),
proxy and CSRF origins come from the environment, `check --deploy` is clean; every page carries
a Content-Security-Policy that allows no inline script, and the templates keep it that way."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "k" * 20 + "-production-like-secret-0123456789-abcdefghij",
    "ALLOWED_HOSTS": "eco.example.com",
}


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "CSRF_"))}
    # The browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in this process; a deployment never does.
    dropped = ("SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE")
    clean = {k: v for k, v in clean.items() if k not in dropped}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "ecoreport.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _settings(names: list[str], **env: str) -> dict:
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n) for n in {names!r}}}))"
    )
    result = _run(code, **env)
    assert result.returncode == 0, result.stderr
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_enforces_https_by_default():
    got = _settings(
        [
            "SECURE_SSL_REDIRECT",
            "SECURE_HSTS_SECONDS",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS",
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
            "SECURE_PROXY_SSL_HEADER",
            "CSRF_TRUSTED_ORIGINS",
        ],
        **PRODUCTION,
    )
    assert got == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_PROXY_SSL_HEADER": None,
        "CSRF_TRUSTED_ORIGINS": [],
    }


def test_proxy_header_and_trusted_origins_come_from_the_environment():
    got = _settings(
        [
            "SECURE_PROXY_SSL_HEADER",
            "CSRF_TRUSTED_ORIGINS",
            "SECURE_SSL_REDIRECT",
            "SECURE_HSTS_SECONDS",
        ],
        **PRODUCTION,
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
        CSRF_TRUSTED_ORIGINS="https://eco.example.com,https://eco2.example.com",
        SECURE_SSL_REDIRECT="0",  # the proxy redirects itself
        SECURE_HSTS_SECONDS="3600",
    )
    assert got == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "CSRF_TRUSTED_ORIGINS": ["https://eco.example.com", "https://eco2.example.com"],
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 3600,
    }


def test_a_malformed_proxy_header_refuses_to_start():
    result = _run("import django; django.setup()", **PRODUCTION, SECURE_PROXY_SSL_HEADER="X-Proto")
    assert result.returncode != 0 and "SECURE_PROXY_SSL_HEADER is 'HEADER,value'" in result.stderr


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = _run(
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        **PRODUCTION,
        ECOREPORT_VAR_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_except_the_health_probe(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    client = Client()
    response = client.get("/accounts/login/")
    assert response.status_code == 301 and response["Location"].startswith("https://")
    assert client.get("/healthz").status_code in (200, 503)
    secure = client.get("/accounts/login/", secure=True)
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    behind_proxy = Client(HTTP_X_FORWARDED_PROTO="https").get("/accounts/login/")
    assert behind_proxy.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/", "/accounts/login/", "/manage/members/", "/targets/", "/api/docs/"]
)
def test_every_page_carries_a_policy_without_inline_script(client, cast, path):
    client.force_login(cast.owner.user)
    response = client.get(path)
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"


TEMPLATES = ROOT / "templates"
# The downloadable HTML report is one self-contained file (plotly inlined) served under its own
# sandboxed policy; every other template must work under the site's policy.
STANDALONE = {TEMPLATES / "reports" / "report.html"}
INLINE = re.compile(
    r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>|\sstyle=|\son[a-z]+=|javascript:",
    re.IGNORECASE,
)


def test_templates_have_no_inline_script_style_or_handlers():
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0).strip()}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        if path not in STANDALONE
        for match in INLINE.finditer(path.read_text())
    ]
    assert offenders == []


@pytest.mark.django_db
def test_the_html_report_viewed_inline_runs_sandboxed(cast, client):
    from datetime import UTC, datetime

    import time_machine

    from ecoreport.core.periods import parse_period
    from ecoreport.reports import services

    with time_machine.travel(datetime(2026, 10, 20, tzinfo=UTC), tick=False):
        report = services.report_generate(organization=cast.org, period=parse_period("2026-Q3"))
    client.force_login(cast.member.user)
    response = client.get(f"/reports/{report.pk}/html?view=1")
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert policy.startswith("sandbox allow-scripts") and "allow-same-origin" not in policy
    assert "default-src 'none'" in policy
