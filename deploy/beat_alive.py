"""Exit 0 while Celery beat's loop runs: the beat container's health check.

The scheduler (hub/beat.py, celery-redbeat) touches `<schedule>.alive` every tick (at most 5 s apart); a file
older than MAX_AGE means the loop is stuck. deploy/entrypoint.sh puts the schedule path under /tmp. A standby
beat (waiting for the lock another beat holds) does not tick, so it fails this check after MAX_AGE and is
restarted: harmless, and with one replica there is no standby outside a rollout.
"""

from __future__ import annotations

import glob
import os
import sys
import time

MAX_AGE = int(os.environ.get("BEAT_MAX_STALE_SECONDS", "600"))


def main() -> int:
    files = glob.glob("/tmp/celerybeat-schedule*")  # noqa: S108 - the container's own tmpfs (entrypoint.sh)
    newest = max((os.path.getmtime(path) for path in files), default=0.0)
    return 0 if time.time() - newest < MAX_AGE else 1


if __name__ == "__main__":
    sys.exit(main())
