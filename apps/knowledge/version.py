"""A per-tenant knowledge version in the shared cache: bumped when published text is (re)indexed, so the
chat's answer cache never serves an answer from text that has since changed."""

from __future__ import annotations

from django.core.cache import cache


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
