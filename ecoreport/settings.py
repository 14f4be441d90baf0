"""EcoReport settings: one file, everything from the environment.

Development works with no environment at all (SQLite under ``var/``, Celery on a filesystem
broker, a throwaway secret key). With ``DEBUG`` off the process refuses to start without a
``SECRET_KEY`` and ``ALLOWED_HOSTS``: a production server must never run on development secrets.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import plotly
from django.core.exceptions import ImproperlyConfigured

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
    "ecoreport.core",
    "ecoreport.organizations",
    "ecoreport.fleet",
    "ecoreport.telemetry",
    "ecoreport.carbon",
    "ecoreport.accounting",
    "ecoreport.policies",
    "ecoreport.savings",
    "ecoreport.dashboards",
    "ecoreport.reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
}
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
CELERY_DIR = VAR_DIR / "celery"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 3600}
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
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Cache (throttling, rollup debounce) ----------------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

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

SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "ecoreport.organizations.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["ecoreport.organizations.permissions.IsOrgMember"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
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

# --- Agents ---------------------------------------------------------------------------------
AGENT_STALE_AFTER_S = env_int("AGENT_STALE_AFTER_S", 600)

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

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- Policy alerts --------------------------------------------------------------------------
# A receiver that is slow or down costs a delivery worker at most this long per attempt; the
# evaluation never waits on it (deliveries are their own tasks, enqueued on commit).
POLICIES_WEBHOOK_TIMEOUT_S = env_float("POLICIES_WEBHOOK_TIMEOUT_S", 5.0)
# Retries after the first attempt, waiting base x 2^n seconds: 30 s, 1, 2, 4, 8 min by default.
POLICIES_DELIVERY_MAX_RETRIES = env_int("POLICIES_DELIVERY_MAX_RETRIES", 5)
POLICIES_DELIVERY_BACKOFF_S = env_float("POLICIES_DELIVERY_BACKOFF_S", 30.0)

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "ecoreport@localhost")
