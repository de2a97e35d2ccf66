"""Test settings: real Postgres and Redis (embedded), fast hashing, no outbound network."""

import os

from django.core.exceptions import ImproperlyConfigured

from hub.settings.base import *  # noqa: F403
from hub.settings.base import CACHES, CELERY_BROKER_TRANSPORT_OPTIONS, DATABASES, LOGGING

HUB_ENV = "test"
DEBUG = False
# Fast hashing keeps user factories cheap; base settings (Argon2) are asserted in tests/test_settings.py.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
]
# HUB_TEST_RUN isolates concurrent runs on one machine: own test databases, own cache keys.
TEST_RUN = os.environ.get("HUB_TEST_RUN", "")
if TEST_RUN and not TEST_RUN.isalnum():
    raise ImproperlyConfigured("Setting HUB_TEST_RUN: letters and digits only")
for _config in DATABASES.values():
    _config["TEST"]["NAME"] = f"test_{_config['NAME']}{TEST_RUN and '_' + TEST_RUN}"
CACHES["default"]["KEY_PREFIX"] = f"hubtest{TEST_RUN}"
LOGGING["root"]["level"] = "WARNING"
CELERY_TASK_ALWAYS_EAGER = False
# A subprocess the tests start (e.g. a real Celery worker) must use the test databases of that run.
if os.environ.get("HUB_USE_TEST_DATABASES") == "1":
    for _config in DATABASES.values():
        _config["NAME"] = _config["TEST"]["NAME"]
# Concurrent runs share one Redis: each run's broker queues live under its own key prefix.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,
    "global_keyprefix": f"hubtest{TEST_RUN}:celery:",
}
# Each run's metric files live in their own directory (tests/conftest.py empties it when the session starts
# and removes it at the end); worker subprocesses of the run compute the same path and write there too.
HUB_METRICS_DIR = str(HUB_HOME / f"metrics-test{TEST_RUN}")  # noqa: F405

# --- Issue 15, slice "deadlines": chaos tests point one database alias at a stallable TCP proxy
# (tests/chaos/faults.py) in the servers they start: HUB_TEST_DB_PORTS="region_eu=54321,…" (default: none).
for _item in filter(None, os.environ.get("HUB_TEST_DB_PORTS", "").split(",")):
    _alias, _sep, _port = _item.partition("=")
    if _alias not in DATABASES or not _port.isdigit():
        raise ImproperlyConfigured(f"Setting HUB_TEST_DB_PORTS: {_item!r} is not alias=port")
    DATABASES[_alias]["PORT"] = _port
# Each run's beat schedule and lock live under its own prefix too.
CELERY_REDBEAT_KEY_PREFIX = f"hubtest{TEST_RUN}:redbeat"
