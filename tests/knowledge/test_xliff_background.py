"""XLIFF imports in the background (issue 21, slice xliff2): the upload is checked and stored, a Celery
task applies it once (redelivery and a second runner apply nothing), a failure saves nothing of the file,
the import's page follows its status, beat's sweep publishes lost imports again and purges them after 30
days, and another tenant or locale never sees an import."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.knowledge.models import (
    KnowledgeBase,
    Revision,
    Status,
    Translation,
    XliffImport,
    XliffImportStatus,
)
from apps.knowledge.tasks import knowledge_xliff_import_task, knowledge_xliff_sweep_task
from apps.knowledge.xliff import IMPORT_RETENTION_DAYS, _running_lease, kb_xliff_export
from apps.tenants.models import Membership, Tenant
from tests.fixtures.auth import login_verified
from tests.knowledge.xliff_helpers import published_source, translate

pytestmark = pytest.mark.django_db

JA = {"returns:title": "返品", "returns:body": "# 返品\n\n30日以内。"}
JA_BOTH = {**JA, "shipping:title": "配送", "shipping:body": "3日で届きます。"}


@pytest.fixture
def source(tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any) -> Any:
    return published_source(tenant_a, kb, alice, reviewer)


def exported(tenant: Tenant, kb: KnowledgeBase, units: dict[str, str], locale: str = "ja") -> bytes:
    with tenant_context(tenant):
        return translate(kb_xliff_export(kb=kb, locale=locale), units)


def page_url(tenant: Tenant, kb: KnowledgeBase, job_id: int | None = None) -> str:
    kwargs: dict[str, Any] = {"tenant_slug": tenant.slug, "kb_id": kb.pk}
    if job_id is None:
        return reverse("knowledge:xliff", kwargs=kwargs)
    return reverse("knowledge:xliff-import", kwargs={**kwargs, "import_id": job_id})


def text(response: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def upload(client: Client, tenant: Tenant, kb: KnowledgeBase, data: bytes, name: str = "ja.xlf") -> Any:
    return client.post(page_url(tenant, kb), {"file": SimpleUploadedFile(name, data)})


def run(tenant: Tenant, job_id: int) -> Any:
    """The task as a worker runs it (TenantTask loads the tenant), in-process."""
    return knowledge_xliff_import_task.apply(kwargs={"tenant_id": tenant.id, "import_id": job_id}).get()


def job_of(tenant: Tenant, job_id: int) -> XliffImport:
    with tenant_context(tenant):
        return XliffImport.objects.get(pk=job_id)


def counts(tenant: Tenant) -> tuple[int, int]:
    with tenant_context(tenant):
        return (
            Revision.objects.count(),
            AuditEvent.objects.filter(action="knowledge.xliff_imported").count(),
        )


def test_upload_is_stored_queued_then_the_task_applies_it(
    client: Client,
    tenant_a: Tenant,
    kb: KnowledgeBase,
    source: Any,
    editor: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    login_verified(client, editor)
    data = exported(tenant_a, kb, JA)
    before = counts(tenant_a)
    with (
        mock.patch.object(knowledge_xliff_import_task, "apply_async") as publish,
        django_capture_on_commit_callbacks(using=tenant_a.home_region.db_alias, execute=True),
    ):
        response = upload(client, tenant_a, kb, data, "agency ja.xlf")
    assert response.status_code == 302
    with tenant_context(tenant_a):
        job = XliffImport.objects.get()
    assert response["Location"] == page_url(tenant_a, kb, job.pk)
    publish.assert_called_once_with(kwargs={"tenant_id": tenant_a.id, "import_id": job.pk})
    assert (job.status, job.locale, job.region, job.filename, job.actor_id, job.attempts) == (
        XliffImportStatus.QUEUED,
        "ja",
        "",
        "agency ja.xlf",
        editor.pk,
        0,
    )
    assert bytes(job.content) == data
    assert counts(tenant_a) == before  # nothing applied in the request

    queued = client.get(response["Location"])
    assert queued.status_code == 200
    assert "waits for its turn" in text(queued) and 'hx-trigger="every 2s"' in queued.content.decode()
    with tenant_context(tenant_a):
        XliffImport.objects.filter(pk=job.pk).update(status=XliffImportStatus.RUNNING)
    assert "The import is running." in text(client.get(response["Location"]))
    with tenant_context(tenant_a):
        XliffImport.objects.filter(pk=job.pk).update(status=XliffImportStatus.QUEUED)

    assert run(tenant_a, job.pk) == "done"
    job = job_of(tenant_a, job.pk)
    assert (job.status, job.attempts, job.failure) == (XliffImportStatus.DONE, 1, "")
    assert job.result == {
        "locale": "ja",
        "region": "",
        "created": 1,
        "unchanged": 1,
        "errors": [],
        "errors_more": 0,
    }
    assert job.started_at is not None and job.finished_at is not None
    with tenant_context(tenant_a):
        ja = Translation.objects.get(article__key="returns", locale="ja")
        assert (ja.title, ja.status) == ("返品", Status.IN_REVIEW)
        assert ja.revisions.get().note == "XLIFF import: agency ja.xlf"
        assert ja.revisions.get().author_id == editor.pk
        event = AuditEvent.objects.get(action="knowledge.xliff_imported")
        assert event.actor_id == editor.pk
        assert event.changes == {
            "file": "agency ja.xlf",
            "locale": "ja",
            "region": "",
            "created": 1,
            "unchanged": 1,
            "errors": 0,
            "import": job.pk,
        }
    done = client.get(response["Location"])
    assert "Import into ja: saved and submitted for review: 1; unchanged: 1." in text(done)
    assert "hx-trigger" not in done.content.decode()
    listing = client.get(page_url(tenant_a, kb))
    assert "Recent imports" in text(listing) and "1 saved, 1 unchanged" in text(listing)
    assert f'href="{response["Location"]}"' in listing.content.decode()


def test_unit_errors_are_kept_with_the_import(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any
) -> None:
    data = exported(tenant_a, kb, JA).replace(b'id="shipping:title"', b'id="nonsense"')
    login_verified(client, alice)
    with tenant_context(tenant_a):
        from apps.knowledge.xliff import xliff_import_queue

        job = xliff_import_queue(kb=kb, data=data, filename="ja.xlf", actor=alice)
    run(tenant_a, job.pk)
    job = job_of(tenant_a, job.pk)
    assert job.status == XliffImportStatus.DONE and job.result["created"] == 1
    [error] = job.result["errors"]
    assert error["unit_id"] == "nonsense" and error["line"] > 1 and "Unknown unit id" in error["message"]
    page = client.get(page_url(tenant_a, kb, job.pk)).content.decode()
    assert re.search(r"<tr><td>\d+</td><td><code>nonsense</code></td><td>Unknown unit id", page)


def test_redelivery_and_a_second_runner_apply_nothing_twice(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any
) -> None:
    from apps.knowledge.xliff import xliff_import_queue

    with tenant_context(tenant_a):
        job = xliff_import_queue(kb=kb, data=exported(tenant_a, kb, JA_BOTH), filename="ja.xlf", actor=alice)
    assert run(tenant_a, job.pk) == "done"
    after = counts(tenant_a)
    assert run(tenant_a, job.pk) is None  # the redelivered message: the import is done
    assert counts(tenant_a) == after and job_of(tenant_a, job.pk).attempts == 1

    # A run that still holds the import (within its lease) keeps it; one past its lease died and is replaced.
    with tenant_context(tenant_a):
        rows = XliffImport.objects.filter(pk=job.pk)
        rows.update(status=XliffImportStatus.RUNNING, started_at=timezone.now())
    assert run(tenant_a, job.pk) is None
    with tenant_context(tenant_a):
        rows.update(started_at=timezone.now() - _running_lease() - timedelta(seconds=1))
    assert run(tenant_a, job.pk) == "done"
    job = job_of(tenant_a, job.pk)
    assert (job.attempts, job.result["created"], job.result["unchanged"]) == (2, 0, 2)
    assert counts(tenant_a) == (after[0], after[1] + 1)  # no new revision; the second run is audited too


def test_an_error_mid_import_fails_it_and_saves_nothing(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any, caplog: Any
) -> None:
    from apps.knowledge import xliff

    with tenant_context(tenant_a):
        job = xliff.xliff_import_queue(
            kb=kb, data=exported(tenant_a, kb, JA_BOTH), filename="ja.xlf", actor=alice
        )
    before = counts(tenant_a)
    real = xliff.translation_submit
    calls = 0

    def flaky(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("database hiccup")
        return real(**kwargs)

    with mock.patch.object(xliff, "translation_submit", side_effect=flaky):
        assert run(tenant_a, job.pk) == "failed"
    job = job_of(tenant_a, job.pk)
    assert job.status == XliffImportStatus.FAILED and "nothing of this file was saved" in job.failure
    assert "database hiccup" not in job.failure and job.result == {}
    assert counts(tenant_a) == before  # neither the first article (applied before the error) nor the second
    with tenant_context(tenant_a):
        assert not Translation.objects.filter(locale="ja").exists()
    assert any(r.getMessage() == "XLIFF import failed" for r in caplog.records)
    login_verified(client, alice)
    page = client.get(page_url(tenant_a, kb, job.pk))
    assert "The import failed; nothing of this file was saved." in text(page)
    assert "hx-trigger" not in page.content.decode()


def test_an_import_past_its_time_limit_fails_and_saves_nothing(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    from apps.knowledge import xliff

    with tenant_context(tenant_a):
        job = xliff.xliff_import_queue(kb=kb, data=exported(tenant_a, kb, JA), filename="ja.xlf", actor=alice)
    before = counts(tenant_a)
    real = xliff.translation_submit

    def slow(**kwargs: Any) -> Any:
        real(**kwargs)
        raise SoftTimeLimitExceeded

    with mock.patch.object(xliff, "translation_submit", side_effect=slow):
        assert run(tenant_a, job.pk) == "failed"
    assert "took longer than allowed" in job_of(tenant_a, job.pk).failure
    assert counts(tenant_a) == before


def test_a_file_no_longer_allowed_when_it_runs_fails_with_the_reason(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, editor: Any, alice: Any
) -> None:
    from apps.knowledge.xliff import xliff_import_queue

    with tenant_context(tenant_a):
        limited = xliff_import_queue(kb=kb, data=exported(tenant_a, kb, JA), filename="ja.xlf", actor=editor)
        gone = xliff_import_queue(kb=kb, data=exported(tenant_a, kb, JA), filename="ja.xlf", actor=alice)
    Membership.objects.filter(user=editor, tenant=tenant_a).update(locales=["de"])
    type(editor).objects.filter(pk=editor.pk).update(language="de")
    type(alice).objects.filter(pk=alice.pk).update(is_active=False)
    before = counts(tenant_a)
    assert run(tenant_a, limited.pk) == "failed"
    with translation.override("de"):  # stored in the uploader's console language
        expected = _("You may not edit texts in %(locale)s%(region)s.") % {"locale": "ja", "region": ""}
    assert expected != "You may not edit texts in ja."
    assert job_of(tenant_a, limited.pk).failure == expected
    assert run(tenant_a, gone.pk) == "failed"
    assert "no longer exists or is deactivated" in job_of(tenant_a, gone.pk).failure
    assert counts(tenant_a) == before


def test_sweep_publishes_lost_imports_again_and_purges_old_ones(
    tenant_a: Tenant, tenant_b: Tenant, kb: KnowledgeBase, source: Any, alice: Any
) -> None:
    from apps.knowledge.services import kb_create
    from apps.knowledge.xliff import xliff_import_queue

    data = exported(tenant_a, kb, JA)
    with tenant_context(tenant_a):
        lost = xliff_import_queue(kb=kb, data=data, filename="lost.xlf", actor=alice)
        fresh = xliff_import_queue(kb=kb, data=data, filename="fresh.xlf", actor=alice)
        old = xliff_import_queue(kb=kb, data=data, filename="old.xlf", actor=alice)
        kept = xliff_import_queue(kb=kb, data=data, filename="kept.xlf", actor=alice)
        now = timezone.now()
        XliffImport.objects.filter(pk=lost.pk).update(updated_at=now - timedelta(minutes=5))
        XliffImport.objects.filter(pk__in=[old.pk, kept.pk]).update(status=XliffImportStatus.DONE)
        XliffImport.objects.filter(pk=old.pk).update(
            created_at=now - timedelta(days=IMPORT_RETENTION_DAYS, hours=1)
        )
        XliffImport.objects.filter(pk=kept.pk).update(
            created_at=now - timedelta(days=IMPORT_RETENTION_DAYS - 1)
        )
    with tenant_context(tenant_b):
        kb_b = kb_create(tenant=tenant_b, name="B", source_locale="en", enabled_locales=["ja"])
        other = XliffImport.objects.create(kb=kb_b, locale="ja", filename="b.xlf", content=b"<x/>")
        XliffImport.objects.filter(pk=other.pk).update(
            status=XliffImportStatus.DONE, created_at=now - timedelta(days=IMPORT_RETENTION_DAYS + 1)
        )
    with mock.patch.object(knowledge_xliff_import_task, "apply_async") as publish:
        assert knowledge_xliff_sweep_task.apply().get() == [1, 2]
        publish.assert_called_once_with(kwargs={"tenant_id": tenant_a.id, "import_id": lost.pk})
        assert knowledge_xliff_sweep_task.apply().get() == [0, 0]  # published once per interval
    remaining = set(XliffImport.all_tenants.using(tenant_a.home_region.db_alias).values_list("pk", flat=True))
    remaining |= set(
        XliffImport.all_tenants.using(tenant_b.home_region.db_alias).values_list("pk", flat=True)
    )
    assert remaining == {lost.pk, fresh.pk, kept.pk}


def test_sweep_survives_a_broker_outage(tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any) -> None:
    from kombu.exceptions import OperationalError

    from apps.knowledge.xliff import xliff_import_queue

    with tenant_context(tenant_a):
        lost = xliff_import_queue(kb=kb, data=exported(tenant_a, kb, JA), filename="lost.xlf", actor=alice)
        XliffImport.objects.filter(pk=lost.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    with mock.patch.object(knowledge_xliff_import_task, "apply_async", side_effect=OperationalError("down")):
        assert knowledge_xliff_sweep_task.apply().get() == [0, 0]
    assert job_of(tenant_a, lost.pk).status == XliffImportStatus.QUEUED  # tried again by the next sweeps


def test_other_tenant_other_locale_and_viewer_never_see_an_import(
    client: Client,
    tenant_a: Tenant,
    kb: KnowledgeBase,
    source: Any,
    alice: Any,
    editor: Any,
    bob: Any,
    charlie: Any,
) -> None:
    from apps.knowledge.xliff import xliff_import_queue

    with tenant_context(tenant_a):
        job = xliff_import_queue(
            kb=kb, data=exported(tenant_a, kb, JA), filename="secret-ja.xlf", actor=alice
        )
    run(tenant_a, job.pk)
    path = page_url(tenant_a, kb, job.pk)
    for user, status in ((charlie, 404), (bob, 403)):
        login_verified(client, user)
        response = client.get(path)
        assert response.status_code == status and b"secret-ja" not in response.content
    Membership.objects.filter(user=editor, tenant=tenant_a).update(locales=["de"])
    login_verified(client, editor)
    assert client.get(path).status_code == 404
    assert b"secret-ja" not in client.get(page_url(tenant_a, kb)).content
    login_verified(client, alice)
    assert client.get(path).status_code == 200
    assert client.get(page_url(tenant_a, kb, job.pk + 1000)).status_code == 404
    assert b"secret-ja" in client.get(page_url(tenant_a, kb)).content


# --- a real worker -------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_uploaded_import(tenant_a: Tenant, alice: Any, tmp_path: Path) -> None:
    """Queued from the console path on commit, applied by a Celery worker process; done with its counts."""
    from django.db import connections, transaction

    from apps.knowledge.services import kb_create, translation_publish, translation_save, translation_submit
    from apps.knowledge.xliff import xliff_import_queue
    from tests.fixtures.processes import Worker

    alias = tenant_a.home_region.db_alias
    with tenant_context(tenant_a):
        kb = kb_create(tenant=tenant_a, name="Docs", source_locale="en", enabled_locales=["ja"], actor=alice)
        en = translation_save(kb=kb, key="returns", locale="en", title="Returns", body="Send it back.")
        translation_submit(translation=en)
        translation_publish(translation=en, actor=None)
    data = exported(tenant_a, kb, {"returns:title": "返品", "returns:body": "返送してください。"})
    worker = Worker(tmp_path / "worker.log", "", queues="default", name="xliff")
    worker.start()
    try:
        with tenant_context(tenant_a), transaction.atomic(using=alias):
            job = xliff_import_queue(kb=kb, data=data, filename="ja.xlf", actor=alice)
        rows = XliffImport.all_tenants.using(alias).filter(pk=job.pk)
        deadline = time.monotonic() + 60
        while rows.get().status != XliffImportStatus.DONE:
            assert time.monotonic() < deadline, f"not imported in time; see {worker.log}"
            time.sleep(0.3)
    finally:
        worker.stop()
        connections.close_all()
    assert rows.get().result["created"] == 1
    ja = Translation.all_tenants.using(alias).get(article__kb_id=kb.pk, locale="ja")
    assert (ja.title, ja.status) == ("返品", Status.IN_REVIEW)
