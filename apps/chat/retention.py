"""Retention and erasure of transcripts (registered with the policies app)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from django.conf import settings

from apps.audit.services import audit_record
from apps.core.context import as_ref, tenant_context
from apps.policies.registry import Subject, normalize_phone
from apps.security.keys import user_ref_keys


def _normalized(user_ref: str) -> str:
    """The user reference normalized like erasure subjects (e-mail, phone, id)."""
    text = user_ref.strip()
    if "@" in text:
        text = text.casefold()
    elif text.lstrip("+").replace(" ", "").replace("-", "").isdigit():
        text = normalize_phone(text)
    return text


def _digest(key: bytes, tenant_id: int, text: str) -> str:
    return hmac.new(key, f"{tenant_id}:{text}".encode(), hashlib.sha256).hexdigest()


def user_ref_hash(*, tenant_id: int, user_ref: str) -> str:
    """Keyed hash of a channel's user reference, under the current user reference key (HUB_USER_REF_KEYS).

    A dedicated key, not SECRET_KEY: rotating SECRET_KEY (sessions, signing) must not make a person's
    conversations unfindable for erasure.
    """
    return _digest(user_ref_keys()[0], tenant_id, _normalized(user_ref))


def user_ref_hashes(*, tenant_id: int, user_ref: str) -> list[str]:
    """Every hash a conversation of this user reference may be stored under: what lookups must match.

    The current and previous HUB_USER_REF_KEYS, and the legacy SECRET_KEY-keyed hash (with
    SECRET_KEY_FALLBACKS) of conversations stored before the dedicated key existed; `user_ref_rehash`
    rewrites those, after which previous keys can be dropped from the setting.
    """
    text = _normalized(user_ref)
    legacy = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    keys = [*user_ref_keys(), *(str(key).encode() for key in legacy)]
    return list(dict.fromkeys(_digest(key, tenant_id, text) for key in keys))


def user_ref_rehash(*, tenant: Any, batch_size: int = 500, actor: Any = None) -> int:
    """Re-key the tenant's stored user reference hashes with the current key (after a key rotation).

    The plain reference is kept encrypted beside its hash, so every conversation that has one can be
    re-hashed; returns how many hashes changed (audited). Conditional updates keep a concurrent change.
    """
    ref = as_ref(tenant)
    changed = _rehash(ref, batch_size)
    audit_record(
        "chat.user_refs_rehashed",
        tenant=ref,
        actor=actor,
        target_type="conversation",
        target_label="user reference hashes",
        changes={"rehashed": changed},
    )
    return changed


def _rehash(ref: Any, batch_size: int) -> int:
    from apps.chat.models import Conversation

    changed = 0
    with tenant_context(ref):
        rows = Conversation.objects.filter(user_ref__isnull=False).order_by("pk")
        last_pk = None
        while True:
            page = rows if last_pk is None else rows.filter(pk__gt=last_pk)
            batch = list(page.only("pk", "tenant_id", "user_ref", "user_ref_hash")[:batch_size])
            if not batch:
                return changed
            last_pk = batch[-1].pk
            for conversation in batch:
                current = user_ref_hash(tenant_id=ref.id, user_ref=str(conversation.user_ref))
                if conversation.user_ref_hash != current:
                    changed += Conversation.objects.filter(
                        pk=conversation.pk, user_ref_hash=conversation.user_ref_hash
                    ).update(user_ref_hash=current)


def _delete_in_batches(queryset: Any, batch_size: int) -> int:
    total = 0
    while pks := list(queryset.values_list("pk", flat=True)[:batch_size]):
        queryset.model.objects.filter(pk__in=pks).delete()
        total += len(pks)
    return total


def purge_transcripts(*, tenant: Any, cutoff: datetime, batch_size: int) -> int:
    """Delete conversations (with their messages and feedback) that have not changed since `cutoff`, and
    platform messages (InboundEvent) older than it."""
    from apps.chat.models import Conversation, InboundEvent

    with tenant_context(tenant):
        _delete_in_batches(InboundEvent.objects.filter(updated_at__lt=cutoff), batch_size)
        return _delete_in_batches(Conversation.objects.filter(updated_at__lt=cutoff), batch_size)


def erase_transcripts(*, tenant: Any, subject: Subject) -> int:
    """Delete the subject's conversations, found by the keyed hash of the channel's user reference, and
    the platform messages (InboundEvent) that started their turns."""
    from apps.chat.models import Conversation, InboundEvent

    tenant_id = tenant.id
    hashes = [
        digest
        for value in subject.identifiers().values()
        for digest in user_ref_hashes(tenant_id=tenant_id, user_ref=value)
    ]
    if not hashes:
        return 0
    with tenant_context(tenant):
        erased = Conversation.objects.filter(user_ref_hash__in=hashes)
        # The platform messages of those conversations hold the same person's words and number (issue 17).
        InboundEvent.objects.filter(conversation_id__in=erased.values("pk")).delete()
        return _delete_in_batches(erased, 500)
