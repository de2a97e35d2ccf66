"""The request register: due dates (GDPR art. 12(3)), extension bounds, status changes, encrypted identifiers,
and audit events that name the subject by pseudonym only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.context import as_ref, tenant_context
from apps.core.errors import ValidationFailed
from apps.policies.dsr import dsr_archive_build, dsr_create, dsr_extend, dsr_reject, dsr_start, dsr_subject
from apps.policies.dsr_selectors import dsr_deadline, dsr_list
from apps.policies.models import DataSubjectRequest, RequestStatus
from apps.policies.services import pseudonym
from apps.tenants.models import Tenant
from tests.dsr.helpers import EMAIL, PHONE

pytestmark = pytest.mark.django_db


def test_due_thirty_days_after_receipt_and_identifiers_encrypted(tenant_a: Tenant, alice: Any) -> None:
    received = timezone.now() - timedelta(days=3)
    dsr = dsr_create(
        tenant=tenant_a,
        kind="access",
        email=f" {EMAIL.upper()} ",
        phone=PHONE,
        received_at=received,
        actor=alice,
    )
    assert dsr.status == RequestStatus.RECEIVED
    assert dsr.due_at == received + timedelta(days=30)
    assert dsr.pseudonyms == {
        "email": pseudonym(tenant=tenant_a, kind="email", value=EMAIL),
        "phone": pseudonym(tenant=tenant_a, kind="phone", value="491705550123"),
    }
    assert dsr.subject_key == dsr.pseudonyms["email"]
    with tenant_context(tenant_a):
        stored = DataSubjectRequest.objects.get(pk=dsr.pk)
        assert dsr_subject(stored).email == EMAIL and dsr_subject(stored).phone == "491705550123"
    with connections[as_ref(tenant_a).db_alias].cursor() as cursor:
        cursor.execute("SELECT identifiers FROM policies_datasubjectrequest WHERE id = %s", [dsr.pk])
        raw = cursor.fetchone()[0]
    assert "jane" not in raw.lower() and "5550123" not in raw


def test_refuses_no_identifier_unknown_kind_and_future_receipt(tenant_a: Tenant, alice: Any) -> None:
    with pytest.raises(ValidationFailed):
        dsr_create(tenant=tenant_a, kind="access", email="  ", actor=alice)
    with pytest.raises(ValidationFailed):
        dsr_create(tenant=tenant_a, kind="rectification", email=EMAIL, actor=alice)
    with pytest.raises(ValidationFailed):
        dsr_create(
            tenant=tenant_a,
            kind="access",
            email=EMAIL,
            received_at=timezone.now() + timedelta(days=2),
            actor=alice,
        )
    with tenant_context(tenant_a):
        assert DataSubjectRequest.objects.count() == 0


def test_extension_up_to_sixty_days_with_a_reason(tenant_a: Tenant, alice: Any) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="erasure", email=EMAIL, actor=alice)
    with pytest.raises(ValidationFailed):
        dsr_extend(tenant=tenant_a, dsr=dsr, days=10, reason="  ", actor=alice)
    with pytest.raises(ValidationFailed):
        dsr_extend(tenant=tenant_a, dsr=dsr, days=61, reason="complex", actor=alice)
    with pytest.raises(ValidationFailed):
        dsr_extend(tenant=tenant_a, dsr=dsr, days=0, reason="complex", actor=alice)
    dsr = dsr_extend(tenant=tenant_a, dsr=dsr, days=20, reason="many systems", actor=alice)
    assert dsr.due_at == dsr.received_at + timedelta(days=50)
    with pytest.raises(ValidationFailed):
        dsr_extend(tenant=tenant_a, dsr=dsr, days=41, reason="more", actor=alice)
    dsr = dsr_extend(tenant=tenant_a, dsr=dsr, days=40, reason="more", actor=alice)
    assert (dsr.extension_days, dsr.extension_reason) == (60, "more")
    assert dsr.due_at == dsr.received_at + timedelta(days=90)
    with pytest.raises(ValidationFailed):
        dsr_extend(tenant=tenant_a, dsr=dsr, days=1, reason="again", actor=alice)


def test_overdue_and_due_soon_are_computed_for_open_requests(tenant_a: Tenant, alice: Any) -> None:
    now = timezone.now()
    late = dsr_create(
        tenant=tenant_a,
        kind="access",
        email="a@example.test",
        received_at=now - timedelta(days=31),
        actor=alice,
    )
    soon = dsr_create(
        tenant=tenant_a,
        kind="access",
        email="b@example.test",
        received_at=now - timedelta(days=25),
        actor=alice,
    )
    fresh = dsr_create(tenant=tenant_a, kind="access", email="c@example.test", actor=alice)
    assert [dsr_deadline(d, now=now) for d in (late, soon, fresh)] == ["overdue", "due_soon", ""]
    closed = dsr_reject(tenant=tenant_a, dsr=late, reason="identity not verified", actor=alice)
    assert closed.status == RequestStatus.REJECTED and closed.completed_at is not None
    assert dsr_deadline(closed, now=now) == ""  # a closed request is never overdue
    with tenant_context(tenant_a):
        assert [d.pk for d in dsr_list()] == [soon.pk, fresh.pk, late.pk]  # open by deadline, then closed
        assert [d.pk for d in dsr_list(status="rejected")] == [late.pk]


def test_status_changes_are_one_way(tenant_a: Tenant, alice: Any) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="access", email=EMAIL, actor=alice)
    with pytest.raises(ValidationFailed):
        dsr_reject(tenant=tenant_a, dsr=dsr, reason="", actor=alice)
    started = dsr_start(tenant=tenant_a, dsr=dsr, actor=alice)
    assert started.status == RequestStatus.IN_PROGRESS and started.handled_by_id == alice.pk
    with pytest.raises(ValidationFailed):
        dsr_reject(tenant=tenant_a, dsr=dsr, reason="too late", actor=alice)
    # No archive yet (its task may be lost with the broker): starting again queues it again ...
    assert dsr_start(tenant=tenant_a, dsr=dsr, actor=alice).status == RequestStatus.IN_PROGRESS
    built = dsr_archive_build(tenant=tenant_a, request_id=dsr.pk)
    assert built is not None and built.status == RequestStatus.COMPLETED
    # ... but a completed request is closed for good.
    for refused in (
        lambda: dsr_start(tenant=tenant_a, dsr=dsr, actor=alice),
        lambda: dsr_extend(tenant=tenant_a, dsr=dsr, days=5, reason="x", actor=alice),
        lambda: dsr_reject(tenant=tenant_a, dsr=dsr, reason="x", actor=alice),
    ):
        with pytest.raises(ValidationFailed):
            refused()


def test_audit_events_carry_pseudonyms_only(tenant_a: Tenant, alice: Any) -> None:
    dsr = dsr_create(
        tenant=tenant_a,
        kind="erasure",
        email=EMAIL,
        phone=PHONE,
        external_id="CUST-77",
        user_ref="widget-user-4711",
        actor=alice,
    )
    dsr_extend(tenant=tenant_a, dsr=dsr, days=5, reason="vendor backlog", actor=alice)
    dsr_start(tenant=tenant_a, dsr=dsr, actor=alice)  # erases (no vendor connected: completes at once)
    with tenant_context(tenant_a):
        events = list(AuditEvent.objects.filter(action__startswith="dsr.").order_by("seq"))
        erasure = AuditEvent.objects.get(action="policy.erasure")
        stored = DataSubjectRequest.objects.get(pk=dsr.pk)
    assert [e.action for e in events] == [
        "dsr.created",
        "dsr.extended",
        "dsr.started",
        "dsr.erased",
        "dsr.completed",
    ]
    assert stored.status == RequestStatus.COMPLETED
    for event in [*events, erasure]:
        flat = f"{event.changes!r} {event.target_id} {event.target_label}".lower()
        for secret in ("jane", "example.test", "5550123", "cust-77", "widget-user-4711"):
            assert secret not in flat, (event.action, secret)
    assert events[0].changes["pseudonyms"] == dsr.pseudonyms
    assert all(e.changes["subject"] == dsr.subject_key for e in events)
    assert all(e.target_id == str(dsr.pk) for e in events)
