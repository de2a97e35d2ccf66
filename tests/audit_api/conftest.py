"""The audit API tests: olivia (compliance officer of A) and alice (admin of A) read, bob (viewer) may not,
charlie (admin of B) gets 404. `append` writes many valid chain events at once (audit_record one by one
takes a lock and three statements per event)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.chain import link_hash
from apps.audit.models import AuditEvent
from apps.core.context import as_ref, tenant_context
from apps.tenants.models import Role, Tenant

Append = Callable[..., list[int]]


@pytest.fixture
def charlie_role() -> Role:
    """Admin of B: even an admin elsewhere sees nothing of A."""
    return Role.ADMIN


@pytest.fixture
def append() -> Append:
    """Append `n` events to a tenant's chain (linked and hashed like audit_record); returns their seqs."""

    def run(
        tenant: Tenant,
        n: int,
        *,
        action: str = "test.event",
        start: datetime | None = None,
        step: timedelta = timedelta(milliseconds=1),
        **fields: Any,
    ) -> list[int]:
        ref = as_ref(tenant)
        with tenant_context(ref):
            last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
        seq, prev = last if last else (0, "0" * 64)
        moment = start or timezone.now()
        rows = []
        for i in range(n):
            seq += 1
            event = {
                "seq": seq,
                "tenant_id": ref.id,
                "occurred_at": moment + step * i,
                "actor_id": None,
                "actor_label": "",
                "action": action,
                "target_type": "thing",
                "target_id": str(i),
                "target_label": f"thing {i}",
                "changes": {"i": i},
                "ip": None,
                "user_agent": "",
                "request_id": "",
                "outcome": "success",
                **fields,
            }
            digest = link_hash(prev, event)
            rows.append(AuditEvent(**event, prev_hash=prev, hash=digest))
            prev = digest
        AuditEvent.all_tenants.db_manager(ref.db_alias).bulk_create(rows, batch_size=5000)
        return [row.seq for row in rows]

    return run
