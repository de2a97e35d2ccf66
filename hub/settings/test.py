"""Test settings: real Postgres and Redis (embedded), fast hashing, no outbound network."""

from hub.settings.base import *  # noqa: F403
from hub.settings.base import CACHES, LOGGING

HUB_ENV = "test"
DEBUG = False
# Fast hashing keeps user factories cheap; base settings (Argon2) are asserted in tests/test_settings.py.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
]
CACHES["default"]["KEY_PREFIX"] = "hubtest"
LOGGING["root"]["level"] = "WARNING"
CELERY_TASK_ALWAYS_EAGER = False
