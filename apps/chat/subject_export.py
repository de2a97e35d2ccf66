"""Data-subject access (issue 22), chat's part: a person's conversations and what chat created for them.

Registered with apps.policies.registry in ChatConfig.ready. Conversations are found exactly as the
transcript eraser finds them (the keyed hashes of the user reference), so access and erasure agree.
"""

from __future__ import annotations

from typing import Any

from apps.chat.retention import user_ref_hashes
from apps.core.context import TenantRef, tenant_context
from apps.policies.registry import Subject

#: Messages per conversation in an archive at most (a conversation is bounded by its turns anyway).
MESSAGES_PER_CONVERSATION = 2_000


def _conversations(tenant: TenantRef, subject: Subject, limit: int) -> list[Any]:
    from apps.chat.models import Conversation

    hashes = [
        digest
        for value in subject.identifiers().values()
        for digest in user_ref_hashes(tenant_id=tenant.id, user_ref=value)
    ]
    if not hashes:
        return []
    with tenant_context(tenant):
        return list(
            Conversation.objects.filter(user_ref_hash__in=hashes).order_by("created_at", "id")[:limit]
        )


def export_transcripts(*, tenant: TenantRef, subject: Subject, limit: int) -> list[dict[str, Any]]:
    """The subject's conversations with their messages (as stored: redacted when the policy says so)."""
    from apps.chat.models import Message

    found = []
    with tenant_context(tenant):
        for conversation in _conversations(tenant, subject, limit):
            messages = (
                Message.objects.filter(conversation=conversation)
                .order_by("created_at", "id")
                .values("created_at", "role", "author", "text", "intent", "outcome")[
                    :MESSAGES_PER_CONVERSATION
                ]
            )
            found.append(
                {
                    "id": str(conversation.pk),
                    "channel_kind": conversation.channel_kind,
                    "user_ref": conversation.user_ref,
                    "locale": conversation.locale,
                    "status": conversation.status,
                    "created_at": conversation.created_at,
                    "messages": list(messages),
                }
            )
    return found


def export_created_records(*, tenant: TenantRef, subject: Subject, limit: int) -> list[dict[str, Any]]:
    """Tickets, leads and handoffs chat actions queued for the subject (the messages' recorded actions)."""
    from apps.chat.models import Message

    rows: list[dict[str, Any]] = []
    with tenant_context(tenant):
        ids = [c.pk for c in _conversations(tenant, subject, limit)]
        messages = (
            Message.objects.filter(conversation_id__in=ids)
            .exclude(actions=[])
            .order_by("created_at", "id")
            .values("conversation_id", "created_at", "actions")
        )
        for message in messages.iterator(chunk_size=500):
            for action in message["actions"] or ():
                if not isinstance(action, dict):
                    continue
                rows.append(
                    {
                        "conversation": str(message["conversation_id"]),
                        "created_at": message["created_at"],
                        **{k: action.get(k) for k in ("type", "status", "reference", "connector")},
                    }
                )
                if len(rows) >= limit:
                    return rows
    return rows


def export_transcript_audit(*, tenant: TenantRef, subject: Subject, limit: int) -> list[dict[str, Any]]:
    """Audit events about the subject's conversations (who read the transcript, when): the recipients of
    their data inside the hub. Bounded lookups by conversation id, newest first."""
    from apps.audit.models import AuditEvent

    with tenant_context(tenant):
        ids = [str(c.pk) for c in _conversations(tenant, subject, limit)]
        if not ids:
            return []
        events = (
            AuditEvent.objects.filter(target_type="conversation", target_id__in=ids)
            .order_by("-seq")
            .values("seq", "occurred_at", "action", "actor_label", "target_id", "outcome")[:limit]
        )
        return [dict(event) for event in events]
