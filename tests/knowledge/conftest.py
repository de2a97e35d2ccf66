"""Knowledge fixtures: a knowledge base in tenant A, an editor and a reviewer, a published text with a draft,
and tasks run in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase, Translation
from apps.knowledge.services import kb_create, translation_publish, translation_save, translation_submit
from apps.knowledge.tasks import (
    knowledge_index_task,
    knowledge_reindex_task,
    knowledge_xliff_import_task,
)
from apps.tenants.models import Role, Tenant
from tests.fixtures.tenants import Member
from tests.knowledge.helpers import DE, EN


@pytest.fixture
def run_tasks() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Run the tasks services queue on commit at once, in-process (as a worker would, with its context).

    The test's transaction never commits, so the commit hook runs the callback straight away.
    """
    queued: list[tuple[str, dict[str, Any]]] = []

    def run(task: Any) -> Any:
        def delay(**kwargs: Any) -> Any:
            queued.append((task.name, kwargs))
            return task.apply(kwargs=kwargs).get()

        return delay

    with (
        mock.patch.object(knowledge_index_task, "delay", side_effect=run(knowledge_index_task)),
        mock.patch.object(knowledge_reindex_task, "delay", side_effect=run(knowledge_reindex_task)),
        mock.patch.object(
            knowledge_xliff_import_task,
            "apply_async",
            side_effect=lambda kwargs, **options: run(knowledge_xliff_import_task)(**kwargs),
        ),
        mock.patch("apps.knowledge.services._on_commit", lambda func, using: func()),
    ):
        yield queued


@pytest.fixture
def editor(member: Member, tenant_a: Tenant, alice: Any) -> Any:
    """lena, a localization editor of tenant A (limited to German by the tests that need it)."""
    return member("lena", Role.LOCALIZATION_EDITOR, tenant=tenant_a)


@pytest.fixture
def reviewer(member: Member, tenant_a: Tenant, alice: Any) -> Any:
    """rita, a second localization editor of tenant A (four eyes)."""
    return member("rita", Role.LOCALIZATION_EDITOR, tenant=tenant_a)


@pytest.fixture
def kb(tenant_a: Tenant, alice: Any) -> KnowledgeBase:
    with tenant_context(tenant_a):
        return kb_create(
            tenant=tenant_a,
            name="Help center",
            source_locale="en",
            enabled_locales=["de", "fr", "es", "ja"],
            regions=["EU", "US"],
            four_eyes=True,
            actor=alice,
        )


@pytest.fixture
def texts(tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any) -> dict[str, Translation]:
    """returns: en published; de published (revision 1) then edited (revision 2, a draft)."""
    with tenant_context(tenant_a):
        en = translation_save(kb=kb, key="returns", locale="en", title="Returns", body=EN, author=alice)
        translation_submit(translation=en)
        translation_publish(translation=en, actor=reviewer)
        de = translation_save(kb=kb, key="returns", locale="de", title="Rückgabe", body=DE, author=alice)
        translation_submit(translation=de)
        translation_publish(translation=de, actor=reviewer)
        de = translation_save(
            kb=kb,
            key="returns",
            locale="de",
            title="Rückgabe",
            body=DE.replace("30 Tagen", "45 Tagen"),
            author=alice,
            note="45 days now",
        )
    return {"en": en, "de": de}
