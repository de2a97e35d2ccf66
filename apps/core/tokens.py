"""Bearer tokens kept as hashes (management API, SCIM): issue, revoke, record use — one implementation.

The plaintext is `<scheme>_<prefix>_<secret>`: the prefix is stored to tell tokens apart, the whole string
only as its SHA-256 digest, and the plaintext is returned once. The model needs the fields `prefix`,
`token_hash`, `revoked_at` and `last_used_at`; callers validate, build the row and audit.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.core.errors import Conflict

TOUCH_INTERVAL = timedelta(minutes=1)
T = TypeVar("T", bound=models.Model)


def token_hash(plaintext: str) -> str:
    """The SHA-256 hex digest under which a token is stored (the plaintext never is)."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def token_issue(*, scheme: str, build: Callable[[str, str], T]) -> tuple[T, str]:
    """Save the row `build(prefix, token_hash)` makes for a fresh token; return it with the plaintext.

    A 40-bit prefix collides in theory only: retried, then a Conflict rather than a 500.
    """
    for _attempt in range(3):
        prefix = f"{scheme}_{secrets.token_hex(5)}"
        plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
        token = build(prefix, token_hash(plaintext))
        token.full_clean()
        try:
            with transaction.atomic():
                token.save()
        except IntegrityError:
            continue
        return token, plaintext
    raise Conflict(_("Could not issue a unique token; try again."))


def token_revoke(token: Any) -> bool:
    """Revoke for good; True when this call revoked it (revoking twice keeps the first time)."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at", "updated_at"])
    return True


def token_touch(token: Any) -> None:
    """Record use at most once per interval, so busy clients do not write on every request; the conditional
    UPDATE also keeps concurrent requests from all writing the same row."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < TOUCH_INTERVAL:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - TOUCH_INTERVAL)
    type(token)._default_manager.filter(stale, pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
