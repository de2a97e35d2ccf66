"""The register's Celery tasks: registered under the names services and beat use, thin, idempotent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from celery import current_app
from django.conf import settings

from apps.core.context import tenant_context
from apps.policies.dsr import ARCHIVE_TASK, dsr_create, dsr_start
from apps.policies.models import DataSubjectRequest, RequestStatus
from apps.policies.tasks import dsr_archive_build_task, dsr_archives_expire_task
from apps.tenants.models import Tenant
from tests.dsr.helpers import EMAIL

pytestmark = pytest.mark.django_db


def test_task_names_are_registered() -> None:
    names = set(current_app.tasks)
    assert ARCHIVE_TASK in names
    assert settings.CELERY_BEAT_SCHEDULE["policies-dsr-archives-expire"]["task"] in names


def test_archive_task_builds_once_and_quietly_skips_what_is_gone(tenant_a: Tenant, alice: Any) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="access", email=EMAIL, actor=alice)
    dsr_start(tenant=tenant_a, dsr=dsr, actor=alice)
    kwargs = {"tenant_id": tenant_a.pk, "request_id": str(dsr.pk)}
    assert dsr_archive_build_task.apply(kwargs=kwargs).get() == RequestStatus.COMPLETED
    assert dsr_archive_build_task.apply(kwargs=kwargs).get() is None  # redelivered: nothing to do
    gone = {"tenant_id": tenant_a.pk, "request_id": "00000000-0000-0000-0000-000000000000"}
    assert dsr_archive_build_task.apply(kwargs=gone).get() is None
    assert (
        dsr_archive_build_task.apply(kwargs={"tenant_id": 999_999, "request_id": str(dsr.pk)}).get() is None
    )


def test_expire_task_drops_old_archives(tenant_a: Tenant, alice: Any, settings: Any) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="access", email=EMAIL, actor=alice)
    dsr_start(tenant=tenant_a, dsr=dsr, actor=alice)
    dsr_archive_build_task.apply(kwargs={"tenant_id": tenant_a.pk, "request_id": str(dsr.pk)})
    assert dsr_archives_expire_task.apply().get() == 0
    with tenant_context(tenant_a):
        DataSubjectRequest.objects.filter(pk=dsr.pk).update(archive_expires_at=dsr.received_at - timedelta(1))
    assert dsr_archives_expire_task.apply().get() == 1
    with tenant_context(tenant_a):
        assert DataSubjectRequest.objects.get(pk=dsr.pk).archive is None
