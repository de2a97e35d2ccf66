"""The Redis broker transport: kombu's, with a worker that keeps consuming after an acknowledgement fails.

kombu emulates acknowledgements on Redis: a delivered message waits in an "unacked" index, and `ack` removes
it there and only then frees the worker's prefetch slot. When Redis does not answer (stalled, failing over)
the removal raises, the slot is never freed, and after `prefetch_count` such failures (2 here: concurrency 2
x CELERY_WORKER_PREFETCH_MULTIPLIER 1) the worker stops consuming for good while looking healthy (its event
loop idles, seen in tests/chaos/test_worker_faults.py; cf. celery/celery#2415).

Here the slot is freed either way. The message stays in Redis's unacked index, so once the visibility timeout
passes it is delivered again: at least once, which every task absorbs (they are idempotent). The error still
propagates, so Celery logs the failed ack.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis, virtual


class QoS(redis.QoS):
    def ack(self, delivery_tag: Any) -> None:
        try:
            super().ack(delivery_tag)
        except self.channel.connection_errors:
            virtual.QoS.ack(self, delivery_tag)  # free the prefetch slot; Redis redelivers later
            raise

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue=requeue)
        except self.channel.connection_errors:
            virtual.QoS.ack(self, delivery_tag)
            raise


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
