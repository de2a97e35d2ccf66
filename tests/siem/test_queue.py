"""SIEM streaming runs on its own Celery queue, `siem`: a receiver that never answers holds SIEM worker slots,
never the default queue's.

The routing is read off the real Redis broker (no worker consumes this run's queues then). The isolation
test runs two real workers, as deployed (`worker-default` and `worker-siem`): while both SIEM deliveries hang
in the TLS handshake with a listener that accepts and never replies, a default-queue job (the audit anchor
sweep) still completes at once. Bounded: about 15 s, 30 s at most.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connections

from apps.audit.models import AuditAnchor
from apps.audit.services import audit_record
from apps.audit.tasks import audit_anchor_all_task
from apps.siem.models import SiemKind
from apps.siem.services import siem_queue_delivery
from apps.siem.tasks import siem_deliver_due, siem_kick_task
from apps.tenants.models import Tenant
from tests.chaos.faults import broker_messages, broker_purge
from tests.fixtures.processes import Worker
from tests.siem.helpers import SilentListener

DEADLINE_S = 30
#: How long the default job may take once queued; a SIEM send hangs for HUB_SIEM_TIMEOUT_SECONDS (15 s here).
JOB_BOUND_S = 6
WORKER_ENV = {
    "HUB_SIEM_TIMEOUT_SECONDS": "15",
    "HUB_SIEM_RUN_SECONDS": "2",
    # Room for a 15 s send within the task's time limit, and for that limit within the visibility timeout.
    "HUB_TASK_TIME_LIMIT_SECONDS": "40",
    "CELERY_VISIBILITY_TIMEOUT": "90",
}


def queue_length(queue: str) -> int:
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    return int(redis.Redis.from_url(settings.CELERY_BROKER_URL).llen(f"{prefix}{queue}"))


def test_siem_tasks_are_published_to_the_siem_queue_not_default() -> None:
    broker_purge("siem")
    siem_before, default_before = queue_length("siem"), queue_length("default")
    try:
        assert siem_queue_delivery(tenant_id=1, destination_id=str(uuid.uuid4())) is True
        siem_kick_task.apply_async(kwargs={"tenant_id": 1}, countdown=1)
        siem_deliver_due.apply_async()  # what beat sends every HUB_SIEM_BEAT_SECONDS
        assert queue_length("siem") == siem_before + 3
        assert queue_length("default") == default_before
        assert sorted(str(m["task"]) for m in broker_messages("siem")) == [
            "apps.siem.tasks.siem_deliver_due",
            "apps.siem.tasks.siem_deliver_task",
            "apps.siem.tasks.siem_kick_task",
        ]
    finally:
        broker_purge("siem")


def anchors(tenant: Tenant) -> int:
    return AuditAnchor.objects.filter(tenant_id=tenant.id).count()


def wait(predicate: Any, *, until: float, what: str) -> None:
    while not predicate():
        assert time.monotonic() < until, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_stalled_siem_receiver_does_not_delay_default_queue_jobs(
    tenant_a: Tenant, pki: Any, make_destination: Any, tmp_path: Path
) -> None:
    until = time.monotonic() + DEADLINE_S
    for queue in ("default", "siem"):
        broker_purge(queue)  # what earlier tests left unconsumed
    listener = SilentListener().start()
    default = Worker(tmp_path / "default.log", "", queues="default", name="qdefault", env=WORKER_ENV)
    siem = Worker(tmp_path / "siem.log", "", queues="siem", name="qsiem", env=WORKER_ENV)
    try:
        default.start()
        siem.start()
        # The default worker is up: a first anchor of the tenant's chain.
        audit_record("test.event", tenant=tenant_a, target_type="thing", target_id=1)
        audit_anchor_all_task.apply_async()
        wait(lambda: anchors(tenant_a) == 1, until=until, what=f"the first anchor; see {default.log}")

        # Two destinations behind a receiver that never answers: each delivery hangs in its TLS handshake.
        destinations = [
            make_destination(tenant_a, SiemKind.SYSLOG_TLS, listener, pki, name=f"stalled-{i}")
            for i in (1, 2)
        ]
        for destination in destinations:
            siem_queue_delivery(tenant_id=tenant_a.id, destination_id=str(destination.pk))
        wait(lambda: listener.open >= 2, until=until, what=f"two stalled deliveries; see {siem.log}")

        # A default-queue job queued now runs at once, not after a SIEM send timed out.
        queued = time.monotonic()
        audit_anchor_all_task.apply_async()  # the head moved (destinations created): a second anchor
        wait(
            lambda: anchors(tenant_a) == 2,
            until=min(until, queued + JOB_BOUND_S),
            what=f"the default job behind the stalled SIEM; see {default.log}",
        )
        assert listener.open >= 2, "the SIEM deliveries were still waiting for the receiver"
    finally:
        listener.stop()  # closes the stalled connections: the deliveries fail at once and the workers stop
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Worker.stop, (default, siem)))
        connections.close_all()
