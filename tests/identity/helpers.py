"""Shared helpers of the end-user identity tests: a channel's identity mode, proofs, synced orders."""

from __future__ import annotations

import time
from typing import Any

import jwt
from django.utils import timezone

from apps.chat.models import Channel
from apps.chat.services.identity import user_hash
from apps.core.context import tenant_context
from apps.integrations.models import Connection, SyncedRecord
from apps.tenants.models import Tenant

SECRET = "site-identity-secret-0123456789abcdef"


def channel_identity(channel: Channel, *, mode: str, secret: str = SECRET) -> Channel:
    """Set the channel's identity mode and secret (in production: the console or the management API)."""
    with tenant_context(channel.tenant):
        channel.identity_mode = mode
        channel.identity_secret = secret
        channel.save(update_fields=["identity_mode", "identity_secret", "updated_at"])
    return channel


def hmac_proof(user_id: str, *, secret: str = SECRET) -> dict[str, str]:
    return {"user_ref": user_id, "user_hash": user_hash(secret=secret, user_id=user_id)}


def id_token(
    channel: Channel | str,
    *,
    sub: str = "user-1",
    secret: str = SECRET,
    lifetime: int = 600,
    issued: float | None = None,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A site's identity JWT for the channel (aud = channel id)."""
    now = int(time.time() if issued is None else issued)
    payload = {"sub": sub, "aud": str(getattr(channel, "id", channel)), "iat": now, "exp": now + lifetime}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm=algorithm, headers=headers)


def order(
    tenant: Tenant,
    connection: Connection,
    *,
    number: str,
    status: str = "Shipped",
    external_id: str | None = None,
    **fields: Any,
) -> SyncedRecord:
    """A synced order; `fields` may carry email/phone/contact_id (the canonical field names)."""
    data = {"number": number, "status": status, "amount": 4711, "currency": "EUR", **fields}
    with tenant_context(tenant):
        return SyncedRecord.objects.create(
            connection=connection, stream="orders", external_id=external_id or f"o-{number}",
            updated_at=timezone.now(), number=number, status=status,
            email=str(fields.get("email", "")).lower(), fields=data, raw={}, content_hash="x",
            synced_at=timezone.now(),
        )  # fmt: skip
