"""The tenant context: which tenant (and so which region silo) the current code works for.

A contextvar, not a thread-local or a global, so it is correct under threads, asyncio and Celery alike.
The console middleware, the API authentication and the Celery task base class set it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from apps.core.errors import NoTenantContext


@dataclass(frozen=True, slots=True)
class TenantRef:
    """The minimum the data layer needs: who, and which region holds their data."""

    id: int
    slug: str
    region: str

    @property
    def db_alias(self) -> str:
        return region_alias(self.region)


class _TenantLike(Protocol):
    id: int
    slug: str

    @property
    def region_code(self) -> str: ...


_current: contextvars.ContextVar[TenantRef | None] = contextvars.ContextVar("hub_tenant", default=None)


def region_alias(region_code: str) -> str:
    return f"region_{region_code}"


def current_tenant() -> TenantRef:
    """Return the tenant context or raise NoTenantContext (region data is never queried without one)."""
    ref = _current.get()
    if ref is None:
        raise NoTenantContext(
            "No tenant context: region data must be read or written inside tenant_context(tenant)."
        )
    return ref


def current_tenant_or_none() -> TenantRef | None:
    return _current.get()


def as_ref(tenant: TenantRef | _TenantLike) -> TenantRef:
    if isinstance(tenant, TenantRef):
        return tenant
    return TenantRef(id=tenant.id, slug=tenant.slug, region=tenant.region_code)


@contextmanager
def tenant_context(tenant: TenantRef | _TenantLike) -> Iterator[TenantRef]:
    """Run a block for `tenant`: region models route to its home region and scope to its rows."""
    ref = as_ref(tenant)
    token = _current.set(ref)
    try:
        yield ref
    finally:
        _current.reset(token)


def set_tenant(tenant: TenantRef | _TenantLike | None) -> contextvars.Token[TenantRef | None]:
    """Set the context for the rest of a request or task; pair with reset_tenant(token)."""
    return _current.set(None if tenant is None else as_ref(tenant))


def reset_tenant(token: contextvars.Token[TenantRef | None]) -> None:
    _current.reset(token)
