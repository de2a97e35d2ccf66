"""The session engine: Django's cached_db, whose cache is only an optimisation while Redis is down.

Django already ignores cache errors when it reads a session and when it saves one, but not when it refills
the cache after a read from the database: that refill is skipped here (issue 15), so console pages keep
working from the database without Redis. Deleting a session (logout) still needs Redis, to drop the cached
copy: without it logout answers 503 rather than leave the session to come back with Redis.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends import cached_db

from apps.core.deadlines import optional_cache


class SessionStore(cached_db.SessionStore):
    def load(self) -> dict[str, Any]:
        with optional_cache("cache"):
            return super().load()
