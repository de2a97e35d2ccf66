"""API-key authentication for the chat API: `Authorization: Bearer hub_<prefix>_<secret>`.

One control-database lookup (key → channel → tenant) per key, cached in Redis under the key's hash for
`CACHE_TTL` seconds, so a busy channel costs one cache read per request. The cache is dropped whenever it
could lie: on revoke and rotate (`forget_keys`), on any channel change (`forget_channel_keys`) and on any
tenant save, which covers suspension (`forget_tenant_keys`, connected in ChatConfig.ready). Expiry is checked
against the cached expiry on every request, so an expired key is refused even while its entry is warm.

Dropping is not enough under concurrency: a lookup that read the row just before a revoke commits would
write its stale entry after the drop, and the revoked key would work for another `CACHE_TTL`. So each key
has a guard token in Redis that every drop replaces (before and after the change commits); a lookup reads
the token with the entry (the same Lua call as before) and fills the cache only if the token is unchanged
(`apps.core.cache.set_if_guard`, one atomic script in place of the plain `set`).

While Redis is down (issue 15) keys are looked up in the control database on every request: the database is
the source of truth, so a revoked or expired key is still refused; only `last_used_at` is not written (its
gate lives in Redis), and nothing is cached. Revoking or rotating a key needs Redis (the cache drop): without
it the change is refused with 503 rather than made while a stale entry could outlive it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.chat.models import ApiKey, ApiKeyScope
from apps.chat.principal import ChannelPrincipal, channel_principal, tenant_locales
from apps.core.cache import get_add_and_guard, guard_and_delete, set_if_guard
from apps.core.context import TenantRef
from apps.observability import metrics
from apps.tenants.authentication import enter_tenant
from apps.tenants.services import management_token_hash

KEYWORD = "Bearer"
SCHEME = "hub"
CACHE_TTL = 60  # seconds a key's lookup is trusted; every change that matters drops it sooner
TOUCH_INTERVAL = 60  # seconds between two `last_used_at` writes of one key
# Seconds a guard token outlives its drop: longer than any lookup can take between its database read and its
# cache fill (statement and request timeouts are far shorter), so a fill read before the drop never matches.
GUARD_TTL = 24 * 3600
_MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class _Entry:
    """What the cache holds for one key hash: the principal and what decides whether it may be used now."""

    principal: ChannelPrincipal
    revoked: bool
    expires_at: datetime | None
    channel_enabled: bool
    tenant_active: bool


class ApiKeyUser:
    """`request.user` of a chat API request: the key, not a person. Authenticated, never staff.

    The audit log records it by its label (`apikey:<prefix>`) with no user id.
    """

    pk = None
    id = None
    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, prefix: str) -> None:
        self.username = f"apikey:{prefix}"

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username


def _cache_key(key_hash: str) -> str:
    return f"chat:apikey:{key_hash}"


def _touch_key(key_hash: str) -> str:
    return f"chat:apikey-used:{key_hash}"


def _guard_key(key_hash: str) -> str:
    return f"chat:apikey-guard:{key_hash}"


def _load(key_hash: str) -> _Entry | None:
    key = ApiKey.objects.select_related("channel", "tenant__home_region").filter(key_hash=key_hash).first()
    if key is None:
        return None
    channel, tenant = key.channel, key.tenant
    ref = TenantRef(id=tenant.id, slug=tenant.slug, region=tenant.region_code)
    principal = channel_principal(
        channel,
        ref,
        key_id=key.id,
        key_prefix=key.prefix,
        scopes=key.scopes or (),
        locales=tenant_locales(tenant),
    )
    return _Entry(
        principal=principal,
        revoked=key.revoked_at is not None,
        expires_at=key.expires_at,
        channel_enabled=channel.enabled,
        tenant_active=tenant.is_active,
    )


def lookup(key_hash: str) -> _Entry | None:
    """The key's cached entry, loaded from the control database on a miss (unknown keys are not cached)."""
    return _lookup_and_gate(key_hash)[0]


def _lookup_and_gate(key_hash: str) -> tuple[_Entry | None, bool]:
    """The key's entry, and whether this is its first use in TOUCH_INTERVAL (for all processes: a Redis `add`
    is the gate), in one round trip; on a miss, the row, cached unless the key was dropped meanwhile.
    Without Redis: the row, uncached, and no `last_used_at` write."""
    try:
        entry, first_use, guard = get_add_and_guard(
            _cache_key(key_hash), _touch_key(key_hash), 1, TOUCH_INTERVAL, _guard_key(key_hash)
        )
    except (redis.ConnectionError, redis.TimeoutError):
        metrics.record_degraded(dependency="redis", feature="api_key_lookup")
        return _load(key_hash), False
    if entry is None:
        entry = _load(key_hash)
        if entry is not None:
            set_if_guard(_cache_key(key_hash), entry, CACHE_TTL, _guard_key(key_hash), guard)
    return entry, first_use


def _drop(key_hashes: list[str]) -> None:
    guard_and_delete([_guard_key(h) for h in key_hashes], [_cache_key(h) for h in key_hashes], GUARD_TTL)


def forget_keys(*, key_hashes: Iterable[str]) -> None:
    """Drop cached lookups and refuse fills read before now, so the next request reads the database again.

    Called inside a transaction, the drop happens again when it commits: a lookup between now and the commit
    still reads the old row.
    """
    hashes = list(key_hashes)
    if not hashes:
        return
    _drop(hashes)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _drop(hashes))


def forget_channel_keys(*, channel_id: Any) -> None:
    forget_keys(key_hashes=ApiKey.objects.filter(channel_id=channel_id).values_list("key_hash", flat=True))


def forget_tenant_keys(*, tenant_id: Any) -> None:
    forget_keys(key_hashes=ApiKey.objects.filter(tenant_id=tenant_id).values_list("key_hash", flat=True))


def on_tenant_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Receiver for Tenant post_save: a suspended (or moved) tenant's keys must not live on in the cache."""
    if not kwargs.get("created"):
        forget_tenant_keys(tenant_id=instance.pk)


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticate a channel's API key and enter its tenant's context for the rest of the request.

    Unknown, malformed, revoked or expired keys get 401 (`WWW-Authenticate: Bearer`); a key of a disabled
    channel or suspended tenant gets 403. A request without a Bearer header is left to the permission
    classes, which answer 401.
    """

    def authenticate(self, request: Request) -> tuple[ApiKeyUser, ChannelPrincipal] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        if len(parts) != 2:
            raise AuthenticationFailed(_("Malformed Authorization header: use “Bearer <API key>”."))
        try:
            plaintext = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed(_("Invalid API key.")) from None
        scheme, _sep, rest = plaintext.partition("_")
        if scheme != SCHEME or "_" not in rest or len(plaintext) > _MAX_KEY_LENGTH:
            raise AuthenticationFailed(_("Invalid API key."))
        entry, first_use = _lookup_and_gate(management_token_hash(plaintext))
        if entry is None:
            raise AuthenticationFailed(_("Invalid API key."))
        if entry.revoked:
            raise AuthenticationFailed(_("This API key has been revoked."))
        if entry.expires_at is not None and entry.expires_at <= timezone.now():
            raise AuthenticationFailed(_("This API key has expired."))
        if not entry.tenant_active:
            raise PermissionDenied(_("This API key's tenant is suspended."))
        if not entry.channel_enabled:
            raise PermissionDenied(_("This API key's channel is disabled."))
        principal = entry.principal
        if first_use:  # last-used is written at most once a minute per key
            ApiKey.objects.filter(pk=principal.key_id).update(last_used_at=timezone.now())
        enter_tenant(request, principal.tenant)
        return ApiKeyUser(principal.key_prefix), principal

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


def principal_of(request: Request) -> ChannelPrincipal:
    """The request's ChannelPrincipal, or 401 when the request carried no API key."""
    auth = getattr(request, "auth", None)
    if not isinstance(auth, ChannelPrincipal):
        raise NotAuthenticated(_("Send the channel's API key: “Authorization: Bearer <API key>”."))
    return auth


class HasScope(BasePermission):
    """Allow requests whose API key carries `scope` (401 without a key, 403 without the scope)."""

    scope: str = ""

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = principal_of(request)
        if not principal.has_scope(self.scope):
            raise PermissionDenied(_("This API key lacks the “%(scope)s” scope.") % {"scope": self.scope})
        return True


class HasChatScope(HasScope):
    scope = ApiKeyScope.CHAT


class HasTranscriptScope(HasScope):
    scope = ApiKeyScope.TRANSCRIPTS


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Describe the channel API key in the OpenAPI schema as an HTTP bearer scheme."""

    target_class = "apps.chat.auth.ApiKeyAuthentication"
    name = "channelApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "hub_<prefix>_<secret>",
            "description": (
                "A channel's API key, created by a tenant admin in the console (Channels & API keys) or with "
                "POST /api/v1/tenants/{slug}/channels/{id}/keys/. Scopes: `chat` (conversations and "
                "messages), `transcripts` (read transcripts)."
            ),
        }
