"""The Celery app of the multi-process test's workers: the real one, sweeping for abandoned messages often.

kombu's Redis transport hands an unacknowledged message of a dead worker to another one once the visibility
timeout has passed, but only looks every `unacked_restore_interval * unacked_restore_throttle` seconds
(10 times 10 by default). With the production timeout of an hour that is immaterial; with the test's 60 s it
would triple the test's length, so these workers look every 2 s (and a dead worker's restore mutex lapses
after 5 s). Nothing else differs from `celery_worker`.
"""

from celery_worker import app

app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "unacked_restore_interval": 2,
    "unacked_restore_throttle": 1,
    # A worker killed while it holds the restore mutex blocks every restore until the mutex expires
    # (300 s by default): the test kills workers on purpose, so let a stale mutex lapse quickly.
    "unacked_mutex_expire": 5,
}

__all__ = ["app"]
