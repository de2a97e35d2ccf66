"""The beat scheduler: celery-redbeat, so only one beat sends periodic tasks (CELERY_BEAT_SCHEDULER).

RedBeat keeps the schedule in Redis and takes a lock there before its first tick; a second beat waits for the
lock as a standby and takes over when the active one stops renewing it (HUB_BEAT_LOCK_SECONDS). A beat whose
lock was taken over fails its next renewal and exits before sending anything.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from redbeat import RedBeatScheduler


class BeatScheduler(RedBeatScheduler):
    """RedBeat, plus a heartbeat file next to the schedule path for the container's health check.

    The file (`<schedule>.alive`) is touched on every tick of the active beat, so deploy/beat_alive.py can
    tell a running loop from a stuck one. A standby waiting for the lock does not tick.
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
        interval = float(super().tick(*args, **kwargs))
        now = time.monotonic()
        if self.heartbeat is not None and now - self._touched >= 1.0:
            self.heartbeat.touch()
            self._touched = now
        return interval
