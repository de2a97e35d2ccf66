"""Who is calling the chat API: the API key, its channel and its tenant, as small frozen values.

`ApiKeyAuthentication` puts a `ChannelPrincipal` on `request.auth`. It comes from one cached lookup in the
control database, so the answer pipeline reads the channel's settings here instead of querying it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from apps.core.context import TenantRef


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
    """An authenticated API key: what it may do (scopes) and for which channel and tenant."""

    key_id: int
    key_prefix: str
    scopes: frozenset[str]
    tenant: TenantRef
    channel: ChannelInfo

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
