"""Dead letters: work that failed for good, kept with its payload and error history for an operator.

Two kinds arrive here: outbox messages (a permanent vendor error, or retries used up) and sync runs whose
retries ran out (`sync_run_exhausted`, called by the sync task). From the console an operator replays
a letter (the outbox message goes back to pending; the sync is queued again) or discards it; both are
audited. Creating a letter is idempotent: a redelivered task or a message failing again after a replay
reopens the same letter instead of adding another.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.audit.services import audit_record
from apps.core.context import current_tenant
from apps.core.errors import ValidationFailed
from apps.integrations.models import (
    ERROR_LIMIT,
    DeadLetter,
    DeadLetterKind,
    DeadLetterStatus,
    OutboxAttempt,
    OutboxMessage,
    OutboxStatus,
    SyncAttempt,
    SyncRun,
    Trigger,
)
from apps.integrations.services.dispatch import outbox_kick
from apps.integrations.services.sync import sync_request, sync_run_fail


def _history(attempts: Any) -> list[dict[str, Any]]:
    """The attempt rows as JSON: what the console shows as the error history."""
    return [
        {
            "number": a.number,
            "started_at": a.started_at.isoformat() if a.started_at else None,
            "finished_at": a.finished_at.isoformat() if a.finished_at else None,
            "error": a.error,
            "retry_after": a.retry_after,
        }
        for a in attempts
    ]


def deadletter_outbox(*, message: OutboxMessage, error: str) -> DeadLetter:
    """Mark the message dead and file (or reopen) its dead letter; its successors wait until it is resolved.

    Call inside the tenant context; runs in one transaction with the status change.
    """
    now = timezone.now()
    with transaction.atomic(using=current_tenant().db_alias):
        OutboxMessage.objects.filter(pk=message.pk).update(
            status=OutboxStatus.DEAD, last_error=error[:ERROR_LIMIT], updated_at=now
        )
        message.status, message.last_error = OutboxStatus.DEAD, error[:ERROR_LIMIT]
        history = _history(OutboxAttempt.objects.filter(message_id=message.pk).order_by("number"))
        letter, _created = DeadLetter.objects.update_or_create(
            message=message,
            defaults={
                "kind": DeadLetterKind.OUTBOX,
                "connection_id": message.connection_id,
                "stream": message.stream,
                "payload": message.payload,
                "error": error[:ERROR_LIMIT],
                "errors": history,
                "attempts": len(history),
                "status": DeadLetterStatus.OPEN,
                "resolved_at": None,
                "resolved_by_id": None,
            },
        )
    return letter


def deadletter_sync_run(*, run: SyncRun, error: str) -> DeadLetter:
    """File the dead letter of a sync run whose retries ran out (idempotent: a redelivery reopens none)."""
    history = _history(SyncAttempt.objects.filter(run=run).order_by("number"))
    letter, _created = DeadLetter.objects.update_or_create(
        sync_run=run,
        defaults={
            "kind": DeadLetterKind.SYNC,
            "connection_id": run.connection_id,
            "stream": run.stream,
            "payload": {"stream": run.stream, "trigger": run.trigger, "backfill": run.backfill},
            "error": error[:ERROR_LIMIT],
            "errors": history,
            "attempts": len(history),
        },
    )
    return letter


def sync_run_exhausted(*, run_id: int, error: str, attempts: int) -> SyncRun | None:
    """Close a run whose retries are used up and file its dead letter; None when the run is gone."""
    message = f"Retries exhausted after {attempts} attempts. Last error: {error}"
    run = sync_run_fail(run_id=run_id, error=message)
    if run is not None:
        deadletter_sync_run(run=run, error=message)
    return run


def _resolve(
    letter: DeadLetter, *, status: str, action: str, actor: Any, request: HttpRequest | None
) -> None:
    """Close the letter as `status` and audit it as `action` (inside the caller's transaction)."""
    letter.status = status
    letter.resolved_at = timezone.now()
    letter.resolved_by_id = getattr(actor, "pk", None)
    letter.save(update_fields=["status", "resolved_at", "resolved_by_id", "updated_at"])
    audit_record(
        action,
        tenant=current_tenant(),
        actor=actor,
        request=request,
        target=letter,
        changes={"kind": letter.kind, "connection": str(letter.connection_id), "stream": letter.stream},
    )


def _require_open(letter: DeadLetter) -> None:
    if letter.status != DeadLetterStatus.OPEN:
        raise ValidationFailed(_("This dead letter was already resolved."))


def deadletter_replay(
    *, dead_letter: DeadLetter, actor: Any = None, request: HttpRequest | None = None
) -> DeadLetter:
    """Try the work again: an outbox message goes back to pending (with a fresh retry budget) and is
    kicked; a sync is queued again as a manual run. Audited as `deadletter.replayed`."""
    tenant = current_tenant()
    with transaction.atomic(using=tenant.db_alias):
        letter = DeadLetter.objects.select_for_update().select_related("connection").get(pk=dead_letter.pk)
        _require_open(letter)
        if letter.kind == DeadLetterKind.OUTBOX and letter.message_id is not None:
            now = timezone.now()
            OutboxMessage.objects.filter(pk=letter.message_id).update(
                status=OutboxStatus.PENDING, attempts=0, next_attempt_at=now, updated_at=now
            )
            outbox_kick(message=OutboxMessage(pk=letter.message_id))
        else:
            payload = letter.payload or {}
            sync_request(
                connection=letter.connection,
                stream=letter.stream,
                trigger=Trigger.MANUAL,
                backfill=bool(payload.get("backfill")),
            )
        _resolve(
            letter,
            status=DeadLetterStatus.REPLAYED,
            action="deadletter.replayed",
            actor=actor,
            request=request,
        )
    return letter


def deadletter_discard(
    *, dead_letter: DeadLetter, actor: Any = None, request: HttpRequest | None = None
) -> DeadLetter:
    """Give up on the work for good. A discarded outbox message stops holding back its successors.
    Audited as `deadletter.discarded`."""
    tenant = current_tenant()
    with transaction.atomic(using=tenant.db_alias):
        letter = DeadLetter.objects.select_for_update().get(pk=dead_letter.pk)
        _require_open(letter)
        if letter.message_id is not None:
            OutboxMessage.objects.filter(pk=letter.message_id, status=OutboxStatus.DEAD).update(
                status=OutboxStatus.DISCARDED, updated_at=timezone.now()
            )
        _resolve(
            letter,
            status=DeadLetterStatus.DISCARDED,
            action="deadletter.discarded",
            actor=actor,
            request=request,
        )
    return letter
