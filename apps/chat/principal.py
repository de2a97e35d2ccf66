"""Who is calling the chat API: the API key, its channel and its tenant, as small frozen values.

`ApiKeyAuthentication` puts a `ChannelPrincipal` on `request.auth`. It comes from one cached lookup in the
control database, so the answer pipeline reads the channel's settings here instead of querying it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from apps.core.context import TenantRef

if TYPE_CHECKING:
    from apps.chat.models import Channel


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """The channel's settings the chat API needs. `content_region` is already resolved to the tenant's home
    region when the channel leaves it empty."""

    id: UUID
    kind: str
    name: str
    default_locale: str
    allowed_actions: tuple[str, ...]
    knowledge_base_id: UUID | None
    content_region: str
    ticket_connection_id: UUID | None
    lead_connection_id: UUID | None

    def allows(self, action: str) -> bool:
        return action in self.allowed_actions


@dataclass(frozen=True, slots=True)
class ChannelPrincipal:
    """An authenticated API key: what it may do (scopes) and for which channel and tenant.

    `locales` are the tenant's configured locales (default first), read with the tenant row the principal is
    built from and cached with it, so the metrics' `locale` label costs no query per turn (`tenant_locales`).
    """

    key_id: int
    key_prefix: str
    scopes: frozenset[str]
    tenant: TenantRef
    channel: ChannelInfo
    locales: tuple[str, ...] = ()

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


def tenant_locales(tenant: Any) -> tuple[str, ...]:
    """A tenant row's configured locales, its default first (what the `locale` metric label may be)."""
    return tuple(dict.fromkeys([tenant.default_locale, *(tenant.enabled_locales or ())]))


def channel_principal(
    channel: Channel,
    tenant: TenantRef,
    *,
    key_id: int = 0,
    key_prefix: str = "",
    scopes: Iterable[str] = ("chat",),
    locales: Iterable[str] = (),
) -> ChannelPrincipal:
    """The principal of a channel row in its tenant: an API key's (`key_id`, `key_prefix`, `scopes`), or, for
    callers without a key (a widget, a platform's message), chat only under key id 0."""
    info = ChannelInfo(
        id=channel.id,
        kind=channel.kind,
        name=channel.name,
        default_locale=channel.default_locale,
        allowed_actions=tuple(channel.allowed_actions or ()),
        knowledge_base_id=channel.knowledge_base_id,
        content_region=channel.content_region or tenant.region,
        ticket_connection_id=channel.ticket_connection_id,
        lead_connection_id=channel.lead_connection_id,
    )
    return ChannelPrincipal(
        key_id=key_id,
        key_prefix=key_prefix,
        scopes=frozenset(scopes),
        tenant=tenant,
        channel=info,
        locales=tuple(locales),
    )
