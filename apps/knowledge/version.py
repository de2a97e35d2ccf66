"""A per-tenant knowledge version in the shared cache: bumped when published text is (re)indexed or a
knowledge base is created or switches embedding model, so the chat's answer cache never serves an answer
from text that has since changed, and search's cached list of knowledge bases stays current."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from django.core.cache import cache

T = TypeVar("T")


def _key(tenant_id: int) -> str:
    return f"knowledge:version:{tenant_id}"


def knowledge_version(*, tenant_id: int) -> int:
    value = cache.get(_key(tenant_id))
    if value is None:
        cache.add(_key(tenant_id), 1, timeout=None)
        value = cache.get(_key(tenant_id), 1)
    return int(value)


def knowledge_version_bump(*, tenant_id: int) -> None:
    try:
        cache.incr(_key(tenant_id))
    except ValueError:  # not set yet (or evicted): any new value invalidates cached answers
        cache.set(_key(tenant_id), 2, timeout=None)


def knowledge_cached(*, tenant_id: int, name: str, load: Callable[[], T]) -> T:
    """`load()` cached until the tenant's knowledge version changes, checked in one cache round trip.

    The entry remembers the version it was loaded under, read before `load()` runs: a bump while it loads
    leaves an entry that is already stale, so it is loaded again next time rather than served.
    """
    return knowledge_cached_versioned(tenant_id=tenant_id, name=name, load=load)[1]


def knowledge_cached_versioned(*, tenant_id: int, name: str, load: Callable[[], T]) -> tuple[int, T]:
    """`knowledge_cached`, with the version it checked against (the help center keys its pages by it)."""
    key = f"knowledge:{name}:{tenant_id}"
    found = cache.get_many([_key(tenant_id), key])
    version = found.get(_key(tenant_id))
    if version is None:
        version = knowledge_version(tenant_id=tenant_id)
    entry = found.get(key)
    if entry is not None and entry[0] == version:
        return int(version), cast(T, entry[1])
    value = load()
    cache.set(key, (version, value), timeout=24 * 3600)
    return int(version), value
