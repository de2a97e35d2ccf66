"""Production: every secret and service URL comes from the environment; nothing embedded.

Required: DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, DATABASE_URL, REGION_<CODE>_DATABASE_URL per region in
HUB_REGIONS, REDIS_URL. See README.md for the full list.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from hub.settings.base import *  # noqa: F403
from hub.settings.base import SECRET_KEY
from hub.settings.env import env_bool, env_email, env_int, env_list

for _required in (
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DATABASE_URL",
    "REDIS_URL",
    "HUB_MASTER_KEYS",
    "HUB_AUDIT_SIGNING_KEY",
):
    if not os.environ.get(_required):
        raise ImproperlyConfigured(f"Setting {_required}: is required in production but not set")
if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("dev-only"):
    raise ImproperlyConfigured("Setting DJANGO_SECRET_KEY: must be a random value of at least 50 characters")

if not (os.environ.get("HUB_METRICS_TOKEN") or os.environ.get("HUB_METRICS_ALLOW")):
    raise ImproperlyConfigured(
        "Setting HUB_METRICS_TOKEN or HUB_METRICS_ALLOW: one is required in production to protect /metrics"
    )
HUB_ENV = "production"
DEBUG = False
from apps.security.keys import parse_keys  # noqa: E402 - validate the key list at start-up, naming the variable

parse_keys(os.environ["HUB_MASTER_KEYS"], "Setting HUB_MASTER_KEYS")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# WhiteNoise serves what `collectstatic` (run in the image build) put in STATIC_ROOT, not the source dirs.
WHITENOISE_USE_FINDERS = False

# --- Security hardening (issue 14), accounts slice: outgoing e-mail ----------------------------------------
# Production sends e-mail over SMTP or does not start: the console backend would print reset and invitation
# links (secrets) into the logs. EMAIL_URL (no default) is parsed in base.py; here it must be an SMTP URL
# (plain smtp:// with a password only to a loopback relay), and DEFAULT_FROM_EMAIL (no default) must be set.
# The client address settings (HUB_TRUSTED_PROXY_COUNT / HUB_TRUSTED_PROXIES) keep base.py's default: trust
# no proxy until the deployment names its ingress.
if env_email("EMAIL_URL", smtp_only=True) is None:
    raise ImproperlyConfigured(
        "Setting EMAIL_URL: is required in production (e.g. smtp+tls://user:password@smtp.example.com:587)"
    )
if not os.environ.get("DEFAULT_FROM_EMAIL"):
    raise ImproperlyConfigured("Setting DEFAULT_FROM_EMAIL: is required in production")

# --- Security hardening (issue 14), slice "keys" ---------------------------------------------------------
# The user reference hash key is required (no key file in production), validated at start-up like the master
# keys: a person's conversations must stay findable for erasure across SECRET_KEY rotations.
if not os.environ.get("HUB_USER_REF_KEYS"):
    raise ImproperlyConfigured("Setting HUB_USER_REF_KEYS: is required in production but not set")
parse_keys(os.environ["HUB_USER_REF_KEYS"], "Setting HUB_USER_REF_KEYS")

# --- Content and browser (issue 14) -----------------------------------------------------------------------
# API docs and schema only for signed-in users and token holders unless explicitly published (default off).
HUB_API_DOCS_PUBLIC = env_bool("HUB_API_DOCS_PUBLIC", False)

# --- Security hardening (issue 14): outbound requests (SSRF) and stored credentials ---------------------
# Default ON in production: vendor, language-model and embedding URLs must be https (see base.py).
HUB_OUTBOUND_REQUIRE_HTTPS = env_bool("HUB_OUTBOUND_REQUIRE_HTTPS", True)
# Issue 17 (chanconsole): a production widget is embedded by https sites only (localhost excepted).
HUB_WIDGET_ORIGINS_REQUIRE_HTTPS = env_bool("HUB_WIDGET_ORIGINS_REQUIRE_HTTPS", True)
