"""Exit 0 while Celery beat keeps its schedule state fresh: the beat container's health check.

Beat saves its state file (shelve; the suffix depends on the dbm module) at least every few minutes while its
loop runs; a file older than MAX_AGE means the loop is stuck. deploy/entrypoint.sh puts it under /tmp.
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
