"""A worker keeps consuming after Redis fails to confirm acknowledgements (hub/broker.py).

Real Redis (this run's), real kombu channels with a prefetch of 2, as a worker of concurrency 2 has. Redis is
paused while both messages are acknowledged: each ack times out. kombu's own transport then never frees the
two prefetch slots, so a worker stops consuming for good; ours frees them, and Redis hands both messages out
again after the visibility timeout (at least once, never lost) unless the ack reached it after all.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings
from kombu import Connection, Message
from kombu.transport import redis as kombu_redis

from hub.broker import Transport
from tests.chaos.faults import paused, service_pids

VISIBILITY_S = 1


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"ack-test-{uuid.uuid4().hex[:8]}"
    yield name
    with _connection(Transport) as connection:
        connection.default_channel.queue_delete(name)


def _connection(transport: type) -> Connection:
    return Connection(
        settings.CELERY_BROKER_URL,
        transport=transport,
        transport_options={"socket_timeout": 0.3, "visibility_timeout": VISIBILITY_S},
    )


def _fill_and_fail_acks(transport: type, queue: str) -> tuple[bool, int]:
    """Take two messages (prefetch 2), fail both acks with Redis paused; return (can consume, how many back).

    An ack whose command reached the paused server before the client gave up still takes effect when Redis
    resumes: that message is done. A message is lost only if it is neither acknowledged nor delivered again,
    that is, if it stays in the unacked index.
    """
    with _connection(transport) as connection:
        channel = connection.default_channel
        channel.basic_qos(0, 2, False)
        channel.queue_declare(queue)
        for n in range(2):
            channel.basic_publish(channel.prepare_message(f"m{n}"), exchange="", routing_key=queue)
        taken: list[Message] = [channel.basic_get(queue, no_ack=False) for _ in range(2)]
        assert all(taken) and not channel.qos.can_consume()  # both slots in use
        failures = 0
        with paused(service_pids("redis")):
            for message in taken:
                try:
                    message.ack()
                except channel.connection_errors:
                    failures += 1
        assert failures == 2  # Redis did not confirm either ack
        can_consume = channel.qos.can_consume()
        time.sleep(VISIBILITY_S + 0.2)
        channel.qos.restore_visible(num=10, interval=1)
        back = 0
        while channel.basic_get(queue, no_ack=True) is not None:
            back += 1
        assert channel.client.hlen(channel.unacked_key) == 0  # none stuck unacknowledged
        return can_consume, back


def test_failed_acks_free_the_prefetch_slots_and_the_messages_come_back(queue: str) -> None:
    can_consume, back = _fill_and_fail_acks(Transport, queue)
    assert can_consume, "the worker would stop consuming"
    assert back >= 1  # the ack that never reached Redis: delivered again


def test_kombus_own_transport_still_leaks_the_slots(queue: str) -> None:
    """Why hub/broker.py exists. If this fails, kombu fixed it upstream and hub/broker.py can go."""
    can_consume, _back = _fill_and_fail_acks(kombu_redis.Transport, queue)
    assert not can_consume
