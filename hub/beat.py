"""The beat scheduler: celery-redbeat, so only one beat sends periodic tasks (CELERY_BEAT_SCHEDULER).

RedBeat keeps the schedule in Redis and takes a lock there before its first tick; a second beat waits for the
lock as a standby and takes over when the active one stops renewing it (HUB_BEAT_LOCK_SECONDS). A beat whose
lock was taken over fails its next renewal and exits before sending anything.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from redbeat import RedBeatScheduler
from redis.exceptions import LockError, RedisError

logger = logging.getLogger(__name__)


class BeatScheduler(RedBeatScheduler):
    """RedBeat, plus a heartbeat file next to the schedule path for the container's health check.

    The file (`<schedule>.alive`) is touched on every tick of the active beat, so deploy/beat_alive.py can
    tell a running loop from a stuck one. A standby waiting for the lock does not tick. Redis being away is
    not a reason to die (that would stop `make run` whole): the loop waits for it, sending nothing.
    """

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        # RedBeat finds its settings under the CELERY_ namespace but checks for their presence without it, and
        # then forwards no client options (timeouts): name them explicitly, without the namespace.
        app.conf.redbeat_redis_url = settings.CELERY_REDBEAT_REDIS_URL
        app.conf.redbeat_redis_options = settings.CELERY_REDBEAT_REDIS_OPTIONS
        schedule = kwargs.get("schedule_filename") or ""
        self.heartbeat = Path(f"{schedule}.alive") if schedule else None
        self._touched = 0.0
        super().__init__(app, *args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            interval = float(super().tick(*args, **kwargs))
        except LockError:
            # The lock expired while Redis stalled or restarted (longer than HUB_BEAT_LOCK_SECONDS), or
            # another beat took it. Take it back if it is free (and reinstall the schedule a restarted Redis
            # lost); otherwise stop before sending anything: the orchestrator restarts this beat as a
            # standby.
            if self.lock is None or not self.lock.acquire(blocking=False):
                logger.error("beat: another beat holds the lock now; this one stops")
                raise SystemExit(1) from None
            logger.warning("beat: the lock had expired and is taken again; sending resumes")
            self.setup_schedule()
            interval = 1.0
        except RedisError:
            logger.warning("beat: Redis is unavailable; nothing is sent until it returns")
            interval = 1.0
        now = time.monotonic()
        if self.heartbeat is not None and now - self._touched >= 1.0:
            self.heartbeat.touch()
            self._touched = now
        return interval
