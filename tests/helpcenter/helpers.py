"""What the help center tests share."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from apps.core.context import tenant_context
from apps.knowledge.indexing import translations_index
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import translation_publish, translation_save, translation_submit
from apps.tenants.models import Tenant

SITE = "/help/tenant-a/help"
#: Tenant A's custom domain (the `domain_a` fixture) and what ALLOWED_HOSTS must accept for these tests.
HOST = "help.tenant-a.example"
HOSTS = ["127.0.0.1", "localhost", "testserver", HOST, "help.tenant-b.example", "unknown.example"]


def html(response: Any) -> str:
    return str(response.content.decode())


def home_titles(response: Any) -> list[str]:
    """The article titles a home page lists, in page order."""
    return re.findall(r'<li><a href="[^"]*/articles/[^"]*"[^>]*>([^<]*)</a></li>', html(response))


def publish(
    kb: KnowledgeBase, tenant: Tenant, *, key: str, title: str, locale: str = "en", tags: Sequence[str] = ()
) -> None:
    """Write, review, publish and index one text, as an editor, a reviewer and the worker would."""
    with tenant_context(tenant):
        text = translation_save(kb=kb, key=key, locale=locale, title=title, body=f"{title}.", tags=tags)
        translation_submit(translation=text)
        translation_publish(translation=text, actor=None)
        translations_index(translation_ids=[text.pk])
