"""Reads of the data-subject request register (issue 22): lists, one request, its deadline and timeline."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, QuerySet
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.policies.models import DataSubjectRequest, RequestStatus

OPEN_STATUSES = (RequestStatus.RECEIVED, RequestStatus.IN_PROGRESS)


def dsr_list(*, status: str = "", kind: str = "") -> QuerySet[DataSubjectRequest]:
    """The current tenant's requests, open ones by deadline first; identifiers and archives not loaded."""
    queryset = DataSubjectRequest.objects.defer("identifiers", "archive")
    if status:
        queryset = queryset.filter(status=status)
    if kind:
        queryset = queryset.filter(kind=kind)
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
