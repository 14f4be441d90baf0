"""EcoReport settings: one file, everything from the environment.

Development works with no environment at all (SQLite under ``var/``, Celery on a filesystem
broker, a throwaway secret key). With ``DEBUG`` off the process refuses to start without a
``SECRET_KEY`` and ``ALLOWED_HOSTS``: a production server must never run on development secrets.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
import plotly
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue
from redis.backoff import NoBackoff
from redis.retry import Retry

from ecoreport.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("ECOREPORT_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", default=True)
SECRET_KEY = env_str("SECRET_KEY")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
if not DEBUG:
    if not SECRET_KEY or SECRET_KEY.startswith("dev-insecure"):
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    if env_str("ALLOWED_HOSTS") == "":
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off.")
if not SECRET_KEY:
    SECRET_KEY = "dev-insecure-only-for-local-development"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "ecoreport.core",
    "ecoreport.organizations",
    "ecoreport.fleet",
    "ecoreport.telemetry",
    "ecoreport.carbon",
    "ecoreport.codecarbon",
    "ecoreport.accounting",
    "ecoreport.policies",
    "ecoreport.savings",
    "ecoreport.dashboards",
    "ecoreport.reports",
    "ecoreport.metrics",
    "ecoreport.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before sessions and auth: a %00 in the path or query must not reach a database lookup.
    "ecoreport.core.input_guard.RefuseNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-axes turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
    # Last, so that its process_exception sees a view's database error first.
    "ecoreport.core.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "ecoreport.urls"
WSGI_APPLICATION = "ecoreport.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'ecoreport.sqlite3'}")
DATABASES = {
    # Persistent connections, checked before each request reuses one: a connection the server
    # dropped (restart, failover, pg_terminate_backend) is replaced instead of failing the
    # first request that finds it.
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that does not answer costs a request seconds, not the OS's minutes.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int(
        "DB_CONNECT_TIMEOUT_S", 5
    )
# A read-only replica (streaming replication) for the dashboard pages and report building;
# everything else, and every write, uses the primary (ecoreport/core/db.py).
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = dj_database_url.parse(
        DATABASE_REPLICA_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
    DATABASES["replica"].setdefault("OPTIONS", {})["connect_timeout"] = env_int(
        "DB_CONNECT_TIMEOUT_S", 5
    )
    # Tests read the primary through the alias: a replica of the test database is itself.
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["ecoreport.core.db.ReplicaRouter"]
# Behind PgBouncer in transaction mode (DATABASE_POOLER=pgbouncer-transaction): no server-side
# cursors, which live in a server session that the next transaction may not get. Prepared
# statements are off already (Django's psycopg default, prepare_threshold=None); see
# docs/operations.md, "Connection pooling".
DATABASE_POOLER = env_str("DATABASE_POOLER")
if DATABASE_POOLER not in (None, "", "pgbouncer-transaction"):
    raise ImproperlyConfigured(
        f"DATABASE_POOLER={DATABASE_POOLER!r}: the only value is 'pgbouncer-transaction'"
    )
if DATABASE_POOLER:
    for conf in DATABASES.values():
        conf["DISABLE_SERVER_SIDE_CURSORS"] = True
# What a client is told (Retry-After, seconds) when the database fails under a request.
DB_UNAVAILABLE_RETRY_AFTER_S = env_int("DB_UNAVAILABLE_RETRY_AFTER_S", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock when a transaction starts, so the ingest's
        # "which of these samples exist" check and its insert cannot interleave with another
        # writer's (SQLite has no row locks).
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that end-to-end tests can share the test database with the
    # worker and web processes they start.
    # One per test process, so that concurrent test runs on one checkout do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-ecoreport-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Celery ---------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
# Redis down must not hold requests: ingest publishes the rollup and counts its throttle on the
# request path, so a connection attempt gives up quickly and is not retried with backoff.
REDIS_CONNECT_TIMEOUT_S = env_float("REDIS_CONNECT_TIMEOUT_S", 0.5)
REDIS_SOCKET_TIMEOUT_S = env_float("REDIS_SOCKET_TIMEOUT_S", 2.0)
CELERY_DIR = VAR_DIR / "celery"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
        "visibility_timeout": 3600,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S,
        # Above the transport's 1 s blocking reads, so an idle worker is not mistaken for a
        # dead connection.
        "socket_timeout": max(REDIS_SOCKET_TIMEOUT_S, 5.0),
    }
    CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_CONNECT_TIMEOUT_S
    # One quick second try (a pooled connection Redis closed), then the caller's fallback: the
    # rollup enqueue logs and the periodic sweep rolls the hours up.
    CELERY_TASK_PUBLISH_RETRY_POLICY = {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.1,
        "interval_max": 0.1,
    }
else:
    # Embedded mode: the same tasks, a real worker process, and kombu's filesystem transport
    # instead of Redis. It is meant for one machine (the demo), which is all it needs to serve.
    for sub in ("out", "processed", "control"):
        (CELERY_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DIR / "out"),
        "data_folder_out": str(CELERY_DIR / "out"),
        "processed_folder": str(CELERY_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(CELERY_DIR / "control"),
    }
# A separate queue name lets end-to-end tests share a Redis with other workers safely.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "celery")
# Each kind of work on a queue of its own ("celery.rollups" ...), so that a long report or a
# slow webhook never waits in front of a rollup: give each queue its own workers (see
# docs/operations.md, "Scaling out"). A worker started without -Q serves all of them.
TASK_QUEUES = {
    kind: f"{CELERY_TASK_DEFAULT_QUEUE}.{kind}" for kind in ("rollups", "reports", "alerts")
}
CELERY_TASK_ROUTES = {
    "accounting.*": {"queue": TASK_QUEUES["rollups"]},
    "carbon.recompute_emissions": {"queue": TASK_QUEUES["rollups"]},
    "reports.*": {"queue": TASK_QUEUES["reports"]},
    "policies.*": {"queue": TASK_QUEUES["alerts"]},
    "telemetry.label_budget_notify": {"queue": TASK_QUEUES["alerts"]},
}
# A worker started without -Q consumes the default queue and every one above.
CELERY_TASK_QUEUES = [Queue(name) for name in (CELERY_TASK_DEFAULT_QUEUE, *TASK_QUEUES.values())]
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# What tasks print lands in the worker's log at this level. Celery's default, WARNING, made
# every alert e-mail of the console backend (the default EMAIL_BACKEND, so the demo's) read
# as a warning; printing is not a problem.
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Cache (throttling, rollup debounce) ----------------------------------------------------
# Everything cached can be lost, so with Redis unreachable the cache misses and drops writes
# (ecoreport.core.cache) and throttles count per process in "local" (ecoreport.core.throttling).
if REDIS_URL:
    CACHES: dict = {
        "default": {
            "BACKEND": "ecoreport.core.cache.FailSoftRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S,
                "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
                "retry": Retry(NoBackoff(), 1),
                "FAIL_SOFT_RETRY_S": env_float("CACHE_FAIL_SOFT_RETRY_S", 5.0),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CACHES["local"] = {
    "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
    "LOCATION": "ecoreport-local",
}

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = (
    []
    if DEBUG
    else [
        {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
        {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    ]
)
LOGIN_URL = "/accounts/login/"
# Sign-in rate limiting (django-axes, database handler: works in the embedded configuration and
# across web processes). LOGIN_LOCKOUT_BY: "username,ip_address" locks a username and an address
# separately, each after LOGIN_FAILURE_LIMIT failures within LOGIN_LOCKOUT_MINUTES.
AUTHENTICATION_BACKENDS = [
    "ecoreport.organizations.login.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("LOGIN_LOCKOUT_ENABLED", default=True)
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = env_list("LOGIN_LOCKOUT_BY", ["username", "ip_address"])
if not set(AXES_LOCKOUT_PARAMETERS) <= {"username", "ip_address"} or not AXES_LOCKOUT_PARAMETERS:
    raise ImproperlyConfigured("LOGIN_LOCKOUT_BY: a comma list of username and/or ip_address")
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "ecoreport.organizations.login.lockout_response"
AXES_CLIENT_IP_CALLABLE = "ecoreport.organizations.login.client_ip"
LOGIN_TRUSTED_PROXY_COUNT = env_int("LOGIN_TRUSTED_PROXY_COUNT", 0)
# Axes logs each failure itself; its per-attempt verbosity would fill the console in tests.
AXES_VERBOSE = False
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# plotly.js comes from the plotly package itself: the pages work offline, with no CDN.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/plotly", Path(plotly.__file__).parent / "package_data"),
]
# In development gunicorn serves static files straight from the finders (no collectstatic).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Transport security and browser policies ------------------------------------------------
# With DEBUG off: HTTPS only (redirect, HSTS), secure cookies. Behind a TLS-terminating proxy set
# SECURE_PROXY_SSL_HEADER so Django knows the original request was https (otherwise the redirect
# loops). See docs/operations.md#security.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# A load balancer's plain-http health probe must not be redirected.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=False)
_proxy_header = env_list("SECURE_PROXY_SSL_HEADER", [])
if _proxy_header and len(_proxy_header) != 2:
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER is 'HEADER,value', e.g. 'HTTP_X_FORWARDED_PROTO,https'"
    )
SECURE_PROXY_SSL_HEADER = (_proxy_header[0], _proxy_header[1]) if _proxy_header else None
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Preloading commits every subdomain to HTTPS for good, which only the operator can decide
# (SECURE_HSTS_PRELOAD=1); with it off by choice, check --deploy's reminder is silenced.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# Content-Security-Policy (django-csp) on every response: the pages load their scripts and
# styles from /static/ only (no inline script, style attribute or event handler; plotly.js is
# served from the plotly package), so no script inline or from elsewhere runs even if some text
# slipped through escaping. The HTML report viewed in the browser gets its own sandboxed policy
# (reports/views.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        # plotly.js and Swagger UI add <style> elements at run time (their own CSS, the same
        # for every page); scripts, the real danger, stay 'self' only.
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "ecoreport.organizations.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["ecoreport.organizations.permissions.IsOrgMember"],
    "DEFAULT_SCHEMA_CLASS": "ecoreport.core.schema.AutoSchema",
    # The API speaks JSON only (docs/api.md); this parser also refuses documents that would
    # fail further in (lone surrogates, NUL, nesting past the recursion limit) with a 400.
    "DEFAULT_PARSER_CLASSES": ["ecoreport.core.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "ecoreport.core.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "ingest": env_str("INGEST_THROTTLE_RATE", "600/min"),
        "api": env_str("API_THROTTLE_RATE", "1200/min"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "EcoReport API",
    "DESCRIPTION": "GPU energy ingest and sustainability reporting. See docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # `check --deploy` (CI, .ci/run) is about deployment settings; the schema's own warnings
    # are the OpenAPI checks' business, not a reason to fail a deployment check.
    "ENABLE_DJANGO_DEPLOY_CHECK": False,
    # Bearer tokens are the API's way in. Session cookies also work (the pages' own scripts
    # use them) but are not part of the documented contract.
    "AUTHENTICATION_WHITELIST": [
        "ecoreport.organizations.authentication.ApiTokenAuthentication",
        "ecoreport.fleet.authentication.AgentTokenAuthentication",
        "ecoreport.codecarbon.authentication.CodeCarbonTokenAuthentication",
    ],
}

# --- Ingest ---------------------------------------------------------------------------------
INGEST_MAX_BODY_BYTES = env_int("INGEST_MAX_BODY_BYTES", 8 * 1024 * 1024)
# Limit on the decompressed body too: a gzip bomb must not take the web process down.
INGEST_MAX_DECOMPRESSED_BYTES = env_int("INGEST_MAX_DECOMPRESSED_BYTES", 32 * 1024 * 1024)
INGEST_MAX_SAMPLES = env_int("INGEST_MAX_SAMPLES", 10_000)
# Energy above power limit x duration is implausible; the margin covers brief excursions above
# the enforced limit that NVML reports on some boards.
INGEST_POWER_MARGIN = env_float("INGEST_POWER_MARGIN", 1.10)
# A GPU without a known power limit still cannot draw more than this.
INGEST_FALLBACK_MAX_POWER_W = env_float("INGEST_FALLBACK_MAX_POWER_W", 1500.0)
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BODY_BYTES + 1024
# A GPU counts for one host. Listed by a second host while the host it is registered to listed
# it less than this long ago, it stays where it is and the second host's samples of it are
# refused (two agents with the same UUIDs); listed after that, it moves (the GPU was moved, the
# old server is gone). Agents list their GPUs in every upload, every --interval (10 s by
# default): keep this well above the longest interval in the fleet (docs/agent.md).
INGEST_GPU_CLAIM_WINDOW_MINUTES = env_int("INGEST_GPU_CLAIM_WINDOW_MINUTES", 15)
# Samples that started longer ago than this are rejected as implausible (a clock at 1970 or
# 0001-01-01). 400 days: an agent's spool holds days to weeks, and a year-end report (with a
# month of grace to close it) still receives every late sample of the year it covers.
INGEST_MAX_SAMPLE_AGE_DAYS = env_int("INGEST_MAX_SAMPLE_AGE_DAYS", 400)
# New teams and projects that agents' labels may register, per batch and per organization per
# UTC day, each counted for teams and projects separately. Beyond them a label is not registered:
# its share of the energy is stored unattributed, the answer warns, the org's admins are told.
INGEST_MAX_NEW_LABELS_PER_BATCH = env_int("INGEST_MAX_NEW_LABELS_PER_BATCH", 100)
INGEST_MAX_NEW_LABELS_PER_DAY = env_int("INGEST_MAX_NEW_LABELS_PER_DAY", 1000)

# --- Agents ---------------------------------------------------------------------------------
AGENT_STALE_AFTER_S = env_int("AGENT_STALE_AFTER_S", 600)
# How often the fleet page's and the overview's live panel asks for the fleet's state (seconds).
LIVE_REFRESH_S = env_int("LIVE_REFRESH_S", 10)

# --- Carbon accounting ----------------------------------------------------------------------
# Hosts placed at no site: industry-average PUE (Uptime Institute survey 2023) and the world
# grid average, both flagged as fallbacks. See docs/methodology.md.
CARBON_DEFAULT_PUE = env_float("CARBON_DEFAULT_PUE", 1.58)
# Used only if the built-in WORLD factor has been deleted (Ember 2023 world average).
CARBON_WORLD_DEFAULT_G_PER_KWH = env_float("CARBON_WORLD_DEFAULT_G_PER_KWH", 481.0)
# Live grid-data providers are off unless zones are listed: "provider:ZONE[@remote-region]",
# e.g. "electricitymaps:FR,ukgrid:GB,watttime:US-CAL-CISO@CAISO_NORTH".
CARBON_PROVIDER_ZONES = env_list("CARBON_PROVIDER_ZONES", [])
ELECTRICITYMAPS_BASE_URL = env_str("ELECTRICITYMAPS_BASE_URL", "https://api.electricitymap.org")
ELECTRICITYMAPS_TOKEN = env_str("ELECTRICITYMAPS_TOKEN")
WATTTIME_BASE_URL = env_str("WATTTIME_BASE_URL", "https://api.watttime.org")
WATTTIME_USERNAME = env_str("WATTTIME_USERNAME")
WATTTIME_PASSWORD = env_str("WATTTIME_PASSWORD")
UKGRID_BASE_URL = env_str("UKGRID_BASE_URL", "https://api.carbonintensity.org.uk")
CARBON_PROVIDER_TIMEOUT_S = env_float("CARBON_PROVIDER_TIMEOUT_S", 10.0)
CARBON_PROVIDER_RETRIES = env_int("CARBON_PROVIDER_RETRIES", 3)
# Hours of history each scheduled fetch asks for; overlapping windows repair gaps.
CARBON_PROVIDER_LOOKBACK_H = env_int("CARBON_PROVIDER_LOOKBACK_H", 24)

# --- Reports --------------------------------------------------------------------------------
# Days after a quarter ends before its report is issued: agents that were offline upload their
# spool when they return, so the first days after the quarter still bring data for it.
REPORT_ISSUE_DELAY_DAYS = env_int("REPORT_ISSUE_DELAY_DAYS", 7)
# Issued reports whose period ended within this many days are re-checked daily for late data.
REPORT_LATE_DATA_WINDOW_DAYS = env_int("REPORT_LATE_DATA_WINDOW_DAYS", 120)
# The address people open: links in report e-mails are absolute.
REPORT_LINK_BASE_URL = env_str("REPORT_LINK_BASE_URL", "http://localhost:8000")
# A change against an earlier period is printed only when both periods had data in at least
# this share of their hours and from this share of the GPUs known then; else "not comparable".
REPORT_COMPARISON_MIN_COVERAGE_PCT = env_float("REPORT_COMPARISON_MIN_COVERAGE_PCT", 90.0)
if not 0.0 <= REPORT_COMPARISON_MIN_COVERAGE_PCT <= 100.0:
    raise ImproperlyConfigured(
        f"REPORT_COMPARISON_MIN_COVERAGE_PCT={REPORT_COMPARISON_MIN_COVERAGE_PCT!r} is not a "
        "percentage (0 to 100)"
    )

# --- Prometheus /metrics --------------------------------------------------------------------
# Seconds the sums of an organization's closed hours (before yesterday, UTC) are reused between
# scrapes; a change to them (a factor change's recompute, a spool replayed after a day-long
# outage) reaches the counters within this time. See docs/integrations.md.
METRICS_CLOSED_HOURS_CACHE_S = env_int("METRICS_CLOSED_HOURS_CACHE_S", 600)
if METRICS_CLOSED_HOURS_CACHE_S < 0:
    raise ImproperlyConfigured("METRICS_CLOSED_HOURS_CACHE_S must be 0 or more seconds")

# --- Invitations ----------------------------------------------------------------------------
# Days an invitation link (single use) stays valid; see docs/settings.md.
INVITATION_EXPIRY_DAYS = env_int("INVITATION_EXPIRY_DAYS", 7)

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Axes logs every sign-in at INFO; its warnings (lockouts) are what operators need.
        "axes": {"level": "WARNING"},
    },
}

# --- Policy alerts --------------------------------------------------------------------------
# A receiver that is slow or down costs a delivery worker at most this long per attempt; the
# evaluation never waits on it (deliveries are their own tasks, enqueued on commit).
POLICIES_WEBHOOK_TIMEOUT_S = env_float("POLICIES_WEBHOOK_TIMEOUT_S", 5.0)
# Retries after the first attempt, waiting base x 2^n seconds: 30 s, 1, 2, 4, 8 min by default.
POLICIES_DELIVERY_MAX_RETRIES = env_int("POLICIES_DELIVERY_MAX_RETRIES", 5)
POLICIES_DELIVERY_BACKOFF_S = env_float("POLICIES_DELIVERY_BACKOFF_S", 30.0)
# Issued quarterly reports e-mailed to subscribers: retries while the mail server fails.
REPORTS_DELIVERY_MAX_RETRIES = env_int("REPORTS_DELIVERY_MAX_RETRIES", 5)
REPORTS_DELIVERY_BACKOFF_S = env_float("REPORTS_DELIVERY_BACKOFF_S", 60.0)
# Webhooks reach public addresses only (no loopback, private, link-local/metadata, multicast).
# CIDRs listed here are allowed anyway, for receivers inside the network on purpose, e.g.
# "10.20.0.0/16,fd00:1234::/32". See docs/policies.md.
WEBHOOK_ALLOWED_NETWORKS = env_list("WEBHOOK_ALLOWED_NETWORKS", [])
for _cidr in WEBHOOK_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"WEBHOOK_ALLOWED_NETWORKS: {_cidr!r} is not a CIDR") from None

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "ecoreport@localhost")
# With EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend: the SMTP server.
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
