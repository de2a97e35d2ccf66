"""The retention and erasure handlers this app owns: audit events and the tokenization vault."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q

from apps.audit.models import AuditEvent
from apps.audit.services import audit_purge
from apps.core.context import TenantRef, tenant_context
from apps.policies.models import Category, DataSubjectRequest
from apps.policies.registry import Subject, register_eraser, register_exporter, register_purger
from apps.security.models import VaultEntry

ONE_MICROSECOND = timedelta(microseconds=1)


def purge_audit_events(*, tenant: TenantRef, cutoff: datetime, batch_size: int) -> int:
    """Purge audit events older than `cutoff`, `batch_size` at a time, each batch its own transaction.

    Goes through audit_purge (the privileged, checkpointed SQL function), so the rest of the chain still
    verifies; each batch cuts at the occurred_at of its last event.
    """
    total = 0
    while True:
        with tenant_context(tenant):
            boundary = (
                AuditEvent.objects.filter(occurred_at__lt=cutoff)
                .order_by("seq")
                .values_list("occurred_at", flat=True)[batch_size - 1 : batch_size]
                .first()
            )
        before = cutoff if boundary is None else min(cutoff, boundary + ONE_MICROSECOND)
        purged = audit_purge(tenant=tenant, before=before)
        total += purged
        if boundary is None or purged == 0 or before == cutoff:
            return total


def erase_vault_entries(*, tenant: TenantRef, subject: Subject, batch_size: int = 500) -> int:
    """Delete the subject's tokenized values.

    Values are encrypted (never searchable), so each entry is decrypted and compared; acceptable because
    the vault only holds values a later step still needs (e.g. a lead's e-mail), not whole transcripts.
    """
    deleted = 0
    with tenant_context(tenant):
        matching = [
            entry.pk
            for entry in VaultEntry.objects.order_by("pk").iterator(chunk_size=batch_size)
            if subject.matches(str(entry.value))
        ]
        for start in range(0, len(matching), batch_size):
            count, _ = VaultEntry.objects.filter(pk__in=matching[start : start + batch_size]).delete()
            deleted += count
    return deleted


def export_audit_references(*, tenant: TenantRef, subject: Subject, limit: int) -> list[dict[str, Any]]:
    """Audit events about the subject: those naming its pseudonyms (erasures) or its requests.

    Found by indexed-free but bounded lookups on target ids (newest first, at most `limit`); the log is
    never decrypted or scanned for identifiers (it holds none).
    """
    from apps.policies.services import pseudonym

    digests = [pseudonym(tenant=tenant, kind=k, value=v) for k, v in subject.identifiers().items()]
    with tenant_context(tenant):
        requests = [
            str(pk)
            for pk in DataSubjectRequest.objects.filter(subject_key__in=digests).values_list("pk", flat=True)
        ]
        events = (
            AuditEvent.objects.filter(
                Q(target_type="data_subject", target_id__in=[d[:64] for d in digests])
                | Q(target_type="data_subject_request", target_id__in=requests)
            )
            .order_by("-seq")
            .values("seq", "occurred_at", "action", "target_type", "target_id", "outcome", "hash")[:limit]
        )
        return [dict(event) for event in events]


register_purger(Category.AUDIT_EVENTS, purge_audit_events)
register_eraser("vault", erase_vault_entries)
register_exporter("audit_references", export_audit_references)
