"""Two real `celery beat` processes: one sends, each periodic task once per interval; a standby takes over.

celery-redbeat (hub/beat.py) takes a lock in Redis before the first tick, so the second beat (a rolling
deploy's overlap, or a mistake) waits as a standby. Both beats log what they send, and the messages stay on
this run's queues (nothing consumes them): consecutive sends of each 5-second task are about 5 s apart,
whichever beat sent them, and the broker holds exactly the sends the logs show (by task id). Then the active
beat is SIGKILLed: the standby takes the lock once it expires (HUB_BEAT_LOCK_SECONDS, 6 s here) and goes on
from the schedule state in Redis, without sending anything twice. Last, Redis is paused for longer than the
lock: the beat waits for it, takes its expired lock back and goes on.

Bounded: about 50 s; every wait has a deadline that fails the test instead of hanging.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.chaos.faults import broker_messages, broker_purge, paused, service_pids
from tests.fixtures.processes import ROOT, child_env

pytestmark = [pytest.mark.slow]

LOCK_SECONDS = 6
QUEUES = ("outbox", "default", "sync", "siem")
#: The 5-second tasks in this test (HUB_SYNC_REQUEUE_SECONDS=5 makes the sweep's interval 5 s too).
EVERY_5_S = ("apps.integrations.tasks.outbox_relay_due", "apps.integrations.tasks.sync_requeue_stale_task")
SENT = re.compile(r'"ts": "([^"]+)".*Sending due task \S+ \((\S+)\)')


class Beat:
    def __init__(self, tmp: Path, name: str) -> None:
        self.log = tmp / f"beat-{name}.log"
        self.schedule = tmp / f"schedule-{name}"
        env = child_env({"HUB_BEAT_LOCK_SECONDS": str(LOCK_SECONDS), "HUB_SYNC_REQUEUE_SECONDS": "5"}, None)
        celery = str(Path(sys.executable).parent / "celery")
        argv = [celery, "-A", "celery_worker", "beat", "--loglevel", "INFO", "--schedule", str(self.schedule)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=out)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def sends(self) -> list[tuple[datetime, str]]:
        """(when, task) of every periodic task this beat sent, from its log."""
        return [
            (datetime.strptime(when, "%Y-%m-%d %H:%M:%S,%f"), task)
            for when, task in SENT.findall(self.text())
        ]

    def active(self) -> bool:
        return "Acquired lock" in self.text()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _sent() -> Counter[str]:
    """Task name -> how many distinct sends the broker holds.

    Counted by task id: a publish whose reply timed out (Redis stalled after receiving it) is retried with
    the same message (HUB_BROKER_PUBLISH_RETRIES), so the broker can hold one send twice. That is delivery at
    least once of one send, which these idempotent sweeps absorb, not a second beat sending.
    """
    ids = {(str(m["task"]), str(m["id"])) for queue in QUEUES for m in broker_messages(queue)}
    return Counter(task for task, _id in ids)


def _wait(condition: object, *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def clean_beat_state() -> Iterator[None]:
    def purge() -> None:
        for queue in QUEUES:
            broker_purge(queue)
        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(f"{settings.CELERY_REDBEAT_KEY_PREFIX}*"))
        if keys:
            client.delete(*keys)

    purge()
    yield
    purge()


def _logged(beats: list[Beat]) -> dict[str, list[datetime]]:
    sends = sorted(send for beat in beats for send in beat.sends())
    return {task: [when for when, name in sends if name == task] for task in EVERY_5_S}


def _assert_once_per_interval(beats: list[Beat]) -> None:
    """Every 5-second task was sent by one beat at a time: consecutive sends (of both beats) >= ~5 s apart."""
    for task, times in _logged(beats).items():
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert all(gap >= 4.0 for gap in gaps), (task, gaps)
    # Nothing was sent that the logs do not show (each send is on the broker, nobody consumes them). A beat
    # logs a send just before it publishes, and a tick sends its tasks a few milliseconds apart: compare the
    # two between ticks, when they have settled (a second beat's extra sends would never settle).
    deadline = time.monotonic() + 3
    while True:
        logged = {task: len(times) for task, times in _logged(beats).items()}
        on_broker = {task: _sent()[task] for task in EVERY_5_S}
        if on_broker == logged or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert on_broker == logged


def test_two_beats_send_each_periodic_task_once(tmp_path: Path, clean_beat_state: None) -> None:
    first = Beat(tmp_path, "a")
    second: Beat | None = None
    try:
        _wait(first.active, seconds=20, what=f"the first beat to take the lock; see {first.log}")
        second = Beat(tmp_path, "b")
        _wait(lambda: all(_sent()[task] >= 2 for task in EVERY_5_S), seconds=20, what="two ticks' messages")
        assert not second.active(), f"two beats hold the lock; see {second.log}"
        assert second.proc.poll() is None, f"the standby died; see {second.log}"
        assert second.sends() == []
        _assert_once_per_interval([first, second])
        assert Path(f"{first.schedule}.alive").exists()  # the health check's heartbeat

        # The active beat dies without releasing its lock: the standby takes over once the lock expires.
        first.stop(signal.SIGKILL)
        killed = time.monotonic()
        _wait(second.active, seconds=LOCK_SECONDS + 10, what=f"the standby to take over; see {second.log}")
        assert time.monotonic() - killed <= LOCK_SECONDS + 8
        _wait(lambda: len(second.sends()) >= 2 * len(EVERY_5_S), seconds=15, what="the new beat's ticks")
        # The schedule state lives in Redis: the new beat goes on from it, never sending twice in an interval.
        _assert_once_per_interval([first, second])
        assert Path(f"{second.schedule}.alive").exists()

        # Redis stalls for longer than the lock: the beat keeps looping, takes its expired lock back and goes
        # on, still never sending a task twice in an interval.
        before = len(second.sends())
        with paused(service_pids("redis")):
            threading.Event().wait(LOCK_SECONDS + 2)
        _wait(lambda: len(second.sends()) >= before + 2 * len(EVERY_5_S), seconds=20, what="sends after")
        assert second.proc.poll() is None, f"the beat died with Redis paused; see {second.log}"
        _assert_once_per_interval([first, second])
    finally:
        first.stop()
        if second is not None:
            second.stop()
