"""Reads of the data-subject request register (issue 22): lists, one request, its deadline and timeline."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.policies.models import DataSubjectRequest, RequestStatus

OPEN_STATUSES = (RequestStatus.RECEIVED, RequestStatus.IN_PROGRESS)


def dsr_list(
    *, status: str = "", kind: str = "", overdue: bool | None = None, now: datetime | None = None
) -> QuerySet[DataSubjectRequest]:
    """The current tenant's requests, open ones by deadline first; identifiers and archives not loaded.

    `overdue` True keeps the open requests past their deadline, False the others (as dsr_deadline says).
    """
    queryset = DataSubjectRequest.objects.defer("identifiers", "archive")
    if status:
        queryset = queryset.filter(status=status)
    if kind:
        queryset = queryset.filter(kind=kind)
    if overdue is not None:
        late = Q(status__in=OPEN_STATUSES, due_at__lte=now or timezone.now())
        queryset = queryset.filter(late) if overdue else queryset.exclude(late)
    # Open requests (not completed) first by deadline, then the closed ones, latest first.
    return queryset.order_by(F("completed_at").desc(nulls_first=True), "due_at", "id")


def dsr_get(*, pk: Any) -> DataSubjectRequest | None:
    """One of the current tenant's requests, or None (also for a malformed id)."""
    try:
        key = uuid.UUID(str(pk))
    except ValueError:
        return None
    return DataSubjectRequest.objects.defer("archive").filter(pk=key).first()


def dsr_has_archive(*, pk: Any) -> bool:
    return DataSubjectRequest.objects.filter(pk=pk, archive__isnull=False).exists()


def dsr_deadline(dsr: DataSubjectRequest, *, now: datetime | None = None) -> str:
    """ "overdue", "due_soon" (within HUB_DSR_DUE_SOON_DAYS) or "" for an open request; "" once closed."""
    if dsr.status not in OPEN_STATUSES:
        return ""
    now = now or timezone.now()
    if dsr.due_at <= now:
        return "overdue"
    if dsr.due_at <= now + timedelta(days=settings.HUB_DSR_DUE_SOON_DAYS):
        return "due_soon"
    return ""


def dsr_timeline(*, dsr: DataSubjectRequest, limit: int = 100) -> list[AuditEvent]:
    """The request's audit events, oldest first: the timeline the detail page shows."""
    events = AuditEvent.objects.filter(target_type="data_subject_request", target_id=str(dsr.pk)).order_by(
        "seq"
    )
    return list(events[:limit])


def _mask(value: str, *, keep: int) -> str:
    """The first and last `keep` characters, the rest starred; short values are starred whole."""
    if len(value) <= 2 * keep + 2:
        return "*" * len(value)
    return f"{value[:keep]}{'*' * (len(value) - 2 * keep)}{value[-keep:]}"


def dsr_masked_identifiers(dsr: DataSubjectRequest) -> dict[str, str]:
    """The subject's identifiers with most characters starred: enough for an operator to recognise the
    person they registered, not enough to echo their data back through the API (j***@example.test)."""
    identifiers: dict[str, str] = json.loads(dsr.identifiers or "{}")
    masked: dict[str, str] = {}
    for kind, value in identifiers.items():
        if not value:
            continue
        if kind == "email" and "@" in value:
            local, _at, domain = value.rpartition("@")
            masked[kind] = f"{local[:1]}***@{domain}"
        elif kind == "phone":
            masked[kind] = f"{'*' * max(len(value) - 3, 3)}{value[-3:]}" if len(value) > 6 else "*" * 6
        else:
            masked[kind] = _mask(value, keep=2)
    return masked
