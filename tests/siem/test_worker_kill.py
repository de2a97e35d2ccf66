"""A real Celery worker (two prefork children racing on one destination) delivers to a real syslog-over-TLS
listener and is SIGKILLed while a batch is in flight (the listener has read the batch and holds back its
TLS close_notify answer). After a restart every event arrives, in order; the only duplicates are the killed
batch sent again whole, which the receiver drops by `id`.

This process plays beat (`siem_deliver_due`), as the live kicks after each append do too. Bounded: ~30 s
typically, 150 s at most.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.core.context import tenant_context
from apps.siem.models import SiemDestination, SiemKind
from apps.siem.tasks import siem_deliver_due
from apps.tenants.models import Tenant
from tests.fixtures.processes import Worker
from tests.siem.helpers import SyslogTlsListener, assert_in_order_without_gaps

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BATCH = 20
EVENTS = 200
DEADLINE_S = 150
WORKER_ENV = {
    "HUB_SIEM_BATCH": str(BATCH),
    "HUB_SIEM_RUN_SECONDS": "5",
    "HUB_SIEM_TIMEOUT_SECONDS": "5",
    "HUB_SIEM_RETRY_BASE_MS": "100",
    "HUB_SIEM_RETRY_MAX_SECONDS": "1",
}


def cursor(tenant: Tenant, destination: SiemDestination) -> int:
    with tenant_context(tenant):
        return int(SiemDestination.objects.get(pk=destination.pk).delivered_seq)


def wait(predicate: Any, *, until: float, what: str, beat: bool = True) -> None:
    while not predicate():
        assert time.monotonic() < until, f"timed out waiting for {what}"
        if beat:
            siem_deliver_due()
        time.sleep(0.3)


def test_a_worker_killed_mid_batch_loses_nothing_and_reorders_nothing(
    tenant_a: Tenant, pki: Any, make_destination: Any, tmp_path: Path
) -> None:
    until = time.monotonic() + DEADLINE_S
    for i in range(EVENTS):
        audit_record("test.event", tenant=tenant_a, target_type="thing", target_id=i)
    listener = SyslogTlsListener(pki, ack_delay=0.5).start()
    worker = Worker(tmp_path / "worker.log", "", queues="siem", name="siem", env=WORKER_ENV)
    try:
        destination = make_destination(tenant_a, SiemKind.SYSLOG_TLS, listener, pki)
        with tenant_context(tenant_a):
            last = int(AuditEvent.objects.order_by("-seq").values_list("seq", flat=True)[0])
        worker.start()
        # A few batches acknowledged, the next one read by the listener and waiting for its answer: kill.
        wait(
            lambda: cursor(tenant_a, destination) >= 3 * BATCH and listener.pending_acks > 0,
            until=until,
            what=f"a batch in flight; see {worker.log}",
        )
        in_flight_from = cursor(tenant_a, destination) + 1
        worker.kill()
        assert cursor(tenant_a, destination) < in_flight_from + BATCH  # the killed batch was not counted
        received_at_kill = len(listener.events())
        assert received_at_kill > in_flight_from - 1  # ... but the listener has it

        listener.ack_delay = 0
        worker.start()
        caught_up = lambda: cursor(tenant_a, destination) >= last  # noqa: E731
        wait(caught_up, until=until, what=f"the backlog; see {worker.log}")
    finally:
        worker.stop()
        listener.stop()

    seqs = assert_in_order_without_gaps(listener.events(), first=1, last=last)
    # Duplicates only as whole batches sent again: every step back lands on a batch start.
    restarts = [seqs[i] for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1]
    assert restarts, "the killed batch must have been sent again"
    assert all((seq - 1) % BATCH == 0 for seq in restarts), restarts
    assert len(seqs) - last <= BATCH * len(restarts)
