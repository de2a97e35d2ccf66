"""Retention and erasure of transcripts (registered with the policies app)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from django.conf import settings

from apps.core.context import tenant_context
from apps.policies.registry import Subject, normalize_phone


def user_ref_hash(*, tenant_id: int, user_ref: str) -> str:
    """Keyed hash of a channel's user reference, normalized like erasure subjects (e-mail, phone, id)."""
    text = user_ref.strip()
    if "@" in text:
        text = text.casefold()
    elif text.lstrip("+").replace(" ", "").replace("-", "").isdigit():
        text = normalize_phone(text)
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, f"{tenant_id}:{text}".encode(), hashlib.sha256).hexdigest()


def _delete_in_batches(queryset: Any, batch_size: int) -> int:
    total = 0
    while pks := list(queryset.values_list("pk", flat=True)[:batch_size]):
        queryset.model.objects.filter(pk__in=pks).delete()
        total += len(pks)
    return total


def purge_transcripts(*, tenant: Any, cutoff: datetime, batch_size: int) -> int:
    """Delete conversations (with their messages and feedback) that have not changed since `cutoff`."""
    from apps.chat.models import Conversation

    with tenant_context(tenant):
        return _delete_in_batches(Conversation.objects.filter(updated_at__lt=cutoff), batch_size)


def erase_transcripts(*, tenant: Any, subject: Subject) -> int:
    """Delete the subject's conversations, found by the keyed hash of the channel's user reference."""
    from apps.chat.models import Conversation

    tenant_id = tenant.id
    hashes = [user_ref_hash(tenant_id=tenant_id, user_ref=v) for v in subject.identifiers().values()]
    if not hashes:
        return 0
    with tenant_context(tenant):
        return _delete_in_batches(Conversation.objects.filter(user_ref_hash__in=hashes), 500)
