"""Knowledge fixtures: a knowledge base in tenant A, an editor and a reviewer, and tasks run in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import kb_create
from apps.knowledge.tasks import knowledge_index_task, knowledge_reindex_task
from apps.tenants.models import Role, Tenant
from apps.tenants.services import membership_add
from tests.factories import UserFactory


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
        mock.patch("apps.knowledge.services._on_commit", lambda func, using: func()),
    ):
        yield queued


@pytest.fixture
def editor(tenant_a: Tenant, alice: Any) -> Any:
    """A localization editor of tenant A limited to German."""
    user = UserFactory.create(username="lena")
    membership_add(tenant=tenant_a, user=user, role=Role.LOCALIZATION_EDITOR)
    return user


@pytest.fixture
def reviewer(tenant_a: Tenant, alice: Any) -> Any:
    user = UserFactory.create(username="rita")
    membership_add(tenant=tenant_a, user=user, role=Role.LOCALIZATION_EDITOR)
    return user


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
