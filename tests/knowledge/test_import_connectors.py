"""Knowledge import from ServiceNow kb_knowledge and Salesforce Knowledge, against the real simulators."""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from markdown_it import MarkdownIt

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.core.errors import Conflict, NotFound
from apps.integrations.demo import demo_config
from apps.integrations.models import Connection
from apps.integrations.services.connections import connection_create, connection_set_enabled
from apps.knowledge.content import markdown_problems
from apps.knowledge.importing import (
    KnowledgeImportFailed,
    html_to_markdown,
    kb_import_from_connection,
    map_language,
)
from apps.knowledge.models import Article, Chunk, KnowledgeBase, Revision, Status, Translation
from apps.knowledge.tasks import knowledge_import_connection_task
from apps.policies.services import TransferRefused, policy_apply_preset
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator, sf_id, sf_time
from connectors.servicenow.simulator import ServiceNowSimulator, sn_time, sys_id
from connectors.simulation import Row, now_s
from tests.fixtures.auth import login_verified
from tests.fixtures.integrations import demo_connection
from tests.fixtures.simulators import StartSimulator
from tests.knowledge.markup import live_markup

pytestmark = pytest.mark.django_db

#: Two articles, each in en, de, fr, es and ja (the simulators seed one group of five per article).
COUNTS = {"contacts": 0, "accounts": 0, "tickets": 0, "orders": 0, "articles": 10, "leads": 0}
LOCALES = ["de", "en", "es", "fr", "ja"]


@pytest.fixture
def sf_counts() -> Mapping[str, int]:
    return COUNTS


@pytest.fixture
def sn(simulator: StartSimulator) -> ServiceNowSimulator:
    return simulator(ServiceNowSimulator, counts=COUNTS)


def connect(
    tenant: Tenant, sim: Any, kind: str, *, name: str = "", region: str = "", **extra: Any
) -> Connection:
    return demo_connection(tenant, kind, sim.describe(), name=name or kind, region=region, **extra)


def run_import(tenant: Tenant, kb: KnowledgeBase, connection: Connection, **kw: Any) -> Any:
    with tenant_context(tenant):
        return kb_import_from_connection(kb=kb, connection=connection, **kw)


def texts(tenant: Tenant) -> dict[tuple[str, str], Translation]:
    with tenant_context(tenant):
        return {(t.article.key, t.locale): t for t in Translation.objects.select_related("article")}


def sn_add(sim: ServiceNowSimulator, n: int, **data: Any) -> str:
    """Add a kb_knowledge record (number KB{n}) as an editor at the vendor would."""
    row_id = sys_id("kb_knowledge", n)
    ts = now_s()
    data = {
        "number": f"KB{n + 1:07d}",
        "short_description": f"Article {n}",
        "text": "<p>Text.</p>",
        "language": "en",
        "workflow_state": "published",
        "kb_knowledge_base": "IT",
        "translated_from": "",
        "sys_created_on": sn_time(ts),
        **data,
    }
    sim.by_table["kb_knowledge"].insert(Row(row_id, ts, data))
    return row_id


# --- ServiceNow ----------------------------------------------------------------------------------------
def test_servicenow_import_maps_articles_languages_and_bodies(
    tenant_a: Tenant, alice: Any, kb: KnowledgeBase, sn: ServiceNowSimulator, run_tasks: Any
) -> None:
    connection = connect(tenant_a, sn, "servicenow")
    result = run_import(tenant_a, kb, connection, actor=alice, publish=True)
    assert (result.read, result.saved, result.unchanged, result.published, result.errors) == (
        10,
        10,
        0,
        10,
        [],
    )
    rows = texts(tenant_a)
    # The original's number is the key of every translation (translated_from points at it).
    assert sorted(rows) == [(key, loc) for key in ("kb0000001", "kb0000006") for loc in LOCALES]
    vendor = sn.by_table["kb_knowledge"].rows[sys_id("kb_knowledge", 6)].data  # KB0000007: de of article 2
    assert vendor["language"] == "de" and vendor["translated_from"] == sys_id("kb_knowledge", 5)
    german = rows[("kb0000006", "de")]
    assert german.title == vendor["short_description"]
    assert german.body == html_to_markdown(vendor["text"])
    assert german.body == "Rückgaberecht.\n\nArticle 6, locale de."
    assert german.status == Status.PUBLISHED and not german.needs_update
    with tenant_context(tenant_a):
        assert Article.objects.filter(kb=kb).count() == 2
        assert Revision.objects.count() == 10
        note = Revision.objects.get(translation=german).note
        assert note == "import from servicenow KB0000007"
        assert Chunk.objects.filter(kb=kb).values("translation").distinct().count() == 10
        event = AuditEvent.objects.get(action="knowledge.imported")
        assert event.changes["connection"] == "servicenow" and event.changes["saved"] == 10


def test_without_publish_texts_wait_for_review(
    tenant_a: Tenant, alice: Any, kb: KnowledgeBase, sn: ServiceNowSimulator, run_tasks: Any
) -> None:
    result = run_import(tenant_a, kb, connect(tenant_a, sn, "servicenow"), actor=alice)
    assert (result.saved, result.published) == (10, 0)
    assert {t.status for t in texts(tenant_a).values()} == {Status.IN_REVIEW}
    with tenant_context(tenant_a):
        assert Chunk.objects.count() == 0
    assert not [name for name, _kw in run_tasks]  # nothing queued for indexing


def test_second_import_without_vendor_change_writes_nothing(
    tenant_a: Tenant, alice: Any, kb: KnowledgeBase, sn: ServiceNowSimulator, run_tasks: Any
) -> None:
    connection = connect(tenant_a, sn, "servicenow")
    run_import(tenant_a, kb, connection, actor=alice, publish=True)
    indexed = len(run_tasks)
    with tenant_context(tenant_a):
        published = AuditEvent.objects.filter(action="knowledge.published").count()
    again = run_import(tenant_a, kb, connection, actor=alice, publish=True)
    assert (again.read, again.saved, again.unchanged, again.published) == (10, 0, 10, 0)
    with tenant_context(tenant_a):
        assert Revision.objects.count() == 10
        assert AuditEvent.objects.filter(action="knowledge.published").count() == published
    assert len(run_tasks) == indexed

    # The vendor changes the English original: one new revision, its translations need an update.
    original = sys_id("kb_knowledge", 0)
    sn.by_table["kb_knowledge"].update(original, {"text": "<h2>Steps</h2><p>Use the <b>new</b> portal.</p>"})
    third = run_import(tenant_a, kb, connection, actor=alice, publish=True)
    assert (third.saved, third.unchanged, third.published) == (1, 9, 1)
    rows = texts(tenant_a)
    assert rows[("kb0000001", "en")].body == "## Steps\n\nUse the **new** portal."
    assert {loc for (key, loc), t in rows.items() if t.needs_update} == {"de", "fr", "es", "ja"}
    assert not any(t.needs_update for (key, _loc), t in rows.items() if key == "kb0000006")
    with tenant_context(tenant_a):
        assert Revision.objects.count() == 11


def test_unknown_language_and_unused_locale_are_reported_not_guessed(
    tenant_a: Tenant, kb: KnowledgeBase, sn: ServiceNowSimulator, run_tasks: Any
) -> None:
    sn_add(sn, 10, language="tlh")  # not a language code we know
    sn_add(sn, 11, language="pb")  # ServiceNow's Brazilian Portuguese: known, but the KB does not use it
    sn_add(sn, 12, short_description="", language="en")  # no title
    result = run_import(tenant_a, kb, connect(tenant_a, sn, "servicenow"), publish=True)
    assert result.saved == 10
    messages = sorted(str(e) for e in result.errors)
    assert len(messages) == 3
    assert messages[0].startswith(f"KB0000011 ({sys_id('kb_knowledge', 10)}): unknown language code 'tlh'")
    assert messages[1].startswith("KB0000012") and "pt-BR" in messages[1]
    assert messages[2].startswith("KB0000013") and "title" in messages[2]
    assert ("kb0000011", "en") not in texts(tenant_a)
    assert map_language(kind="servicenow", code="zt") == "zh-Hant"
    assert map_language(kind="salesforce", code="en_US") == "en"
    assert map_language(kind="salesforce", code="pt") is None


def test_unpublished_vendor_articles_are_skipped(
    tenant_a: Tenant, kb: KnowledgeBase, sn: ServiceNowSimulator, run_tasks: Any
) -> None:
    sn_add(sn, 10, workflow_state="draft")
    sn_add(sn, 11, workflow_state="retired")
    result = run_import(tenant_a, kb, connect(tenant_a, sn, "servicenow"), publish=True)
    assert (result.read, result.saved, result.skipped, result.errors) == (12, 10, 2, [])


def test_html_is_converted_safely() -> None:
    html = (
        "<h1>Reset</h1><script>alert('x')</script><style>p{}</style><p>Go to "
        "<a href='javascript:alert(1)'>this</a> or <a href='https://help.example.com/a'>help</a>.</p>"
        "<ul><li>one</li><li>two</li></ul><img src='/sys_attachment.do?x=1' alt='diagram'>"
        "<iframe src='https://evil.example'></iframe>"
    )
    assert html_to_markdown(html) == (
        "# Reset\n\nGo to this or [help](https://help.example.com/a).\n\n- one\n- two\n\ndiagram"
    )
    assert html_to_markdown("") == ""


#: What an attacker with write access to the vendor's knowledge base puts into an article.
ATTACK_HTML = (
    "<h2>Printer setup</h2>"
    "<p>&lt;script&gt;alert('entity')&lt;/script&gt; and &lt;img src=x onerror=alert('enc')&gt;</p>"
    "<p><img src='https://cdn.example.com/a.png' onerror=\"alert('img')\""
    " alt='&lt;b onmouseover=alert(1)&gt;'>"
    "<a href='javascript:alert(\"link\")'>click</a> <a href=' JaVaScRiPt:alert(2)'>spaced</a>"
    "<a href='data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=='>data link</a>"
    "<img src='data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+'></p>"
    "<iframe src='https://evil.example/frame'></iframe>"
    "<svg onload=\"alert('svg')\"><script>alert('in-svg')</script></svg>"
    "<p onclick=\"alert('p')\">Safe text &amp; a &lt; b.</p>"
)


def test_imported_vendor_html_is_stored_and_shown_without_live_markup(
    tenant_a: Tenant, alice: Any, kb: KnowledgeBase, sn: ServiceNowSimulator, client: Any, run_tasks: Any
) -> None:
    sn_add(sn, 12, number="KB0000666", short_description="Printer", text=ATTACK_HTML)
    result = run_import(tenant_a, kb, connect(tenant_a, sn, "servicenow"), actor=alice, publish=True)
    assert result.errors == [] and result.saved == 11
    body = texts(tenant_a)[("kb0000666", "en")].body
    assert "Safe text & a < b." in body and "[click]" not in body and "click" in body
    # The Markdown holds no raw HTML and no unsafe link, so even a renderer that passes HTML through
    # (CommonMark with html on, as marked.js and most widgets) makes nothing live of it.
    assert markdown_problems(body) == []
    rendered = MarkdownIt("commonmark").render(body)
    assert live_markup(rendered) == [], rendered
    assert "&lt;script&gt;alert('entity')&lt;/script&gt;" in rendered  # still there, as text
    # The console article page shows it as text.
    login_verified(client, alice)
    page = client.get(
        reverse(
            "knowledge:article", kwargs={"tenant_slug": tenant_a.slug, "kb_id": kb.pk, "key": "kb0000666"}
        )
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "Printer setup" in html and "&lt;script&gt;alert(" in html
    assert live_markup(html, allow_static_scripts=True) == []


# --- Salesforce ----------------------------------------------------------------------------------------
def test_salesforce_import_uses_article_numbers_and_online_versions(
    tenant_a: Tenant, alice: Any, kb: KnowledgeBase, sf: SalesforceSimulator, run_tasks: Any
) -> None:
    # A newer draft version of the English master exists beside the online one: only Online is imported.
    ts = now_s()
    sf.tables["articles"].insert(
        Row(
            sf_id("ka0", 50),
            ts,
            {
                "Title": "Draft rewrite",
                "Body__c": "<p>Not yet.</p>",
                "Language": "en_US",
                "UrlName": "draft",
                "PublishStatus": "Draft",
                "ArticleNumber": "000000001",
                "KnowledgeArticleId": sf_id("kA0", 0),
                "IsMasterLanguage": True,
                "CreatedDate": sf_time(ts),
            },
        )
    )
    result = run_import(tenant_a, kb, connect(tenant_a, sf, "salesforce"), actor=alice, publish=True)
    assert (result.read, result.saved, result.skipped, result.errors) == (11, 10, 1, [])
    rows = texts(tenant_a)
    assert sorted(rows) == [(key, loc) for key in ("000000001", "000000002") for loc in LOCALES]
    english = sf.tables["articles"].rows[sf_id("ka0", 0)].data
    assert english["Language"] == "en_US"
    assert rows[("000000001", "en")].title == english["Title"]
    assert rows[("000000001", "en")].body == html_to_markdown(english["Body__c"])
    assert rows[("000000001", "ja")].title == sf.tables["articles"].rows[sf_id("ka0", 4)].data["Title"]


# --- failures ------------------------------------------------------------------------------------------
def test_vendor_down_imports_nothing_and_is_retryable(
    tenant_a: Tenant, kb: KnowledgeBase, sn: ServiceNowSimulator, run_tasks: Any
) -> None:
    connection = connect(tenant_a, sn, "servicenow", page_size=4)
    # The outage starts after the first page: records already read must not be written either.
    method, pattern, list_rows = next(r for r in sn.routes if r[0] == "GET")

    def first_page_then_down(request: Any) -> Any:
        sn.inject(outage="503")
        return list_rows(request)

    sn.routes[sn.routes.index((method, pattern, list_rows))] = (method, pattern, first_page_then_down)
    with pytest.raises(KnowledgeImportFailed) as caught:
        run_import(tenant_a, kb, connection, publish=True)
    assert caught.value.transient
    assert "Nothing was imported" in str(caught.value) and sn.password not in str(caught.value)
    with tenant_context(tenant_a):
        assert (Article.objects.count(), Revision.objects.count(), Chunk.objects.count()) == (0, 0, 0)
        assert not AuditEvent.objects.filter(action="knowledge.imported").exists()


def test_open_breaker_refuses_without_calling_the_vendor(
    tenant_a: Tenant, kb: KnowledgeBase, sn: ServiceNowSimulator, settings: Any
) -> None:
    settings.HUB_BREAKER_FAILURE_THRESHOLD = 1
    connection = connect(tenant_a, sn, "servicenow")
    sn.inject(outage="503")
    with pytest.raises(KnowledgeImportFailed):
        run_import(tenant_a, kb, connection)
    sn.clear_faults()  # the vendor is back, but the breaker waits for its cool-down before probing
    with pytest.raises(KnowledgeImportFailed, match="circuit breaker is open") as caught:
        run_import(tenant_a, kb, connection)
    assert caught.value.transient and caught.value.retry_after
    with tenant_context(tenant_a):
        assert Article.objects.count() == 0


def test_wrong_credentials_are_permanent(
    tenant_a: Tenant, kb: KnowledgeBase, sn: ServiceNowSimulator
) -> None:
    config, _credentials = demo_config("servicenow", sn.describe())
    connection = connection_create(
        tenant=tenant_a,
        kind="servicenow",
        name="wrong",
        endpoint_region="eu",
        settings=config,
        credentials={"password": "not-the-password-Zq9"},
    )
    with pytest.raises(KnowledgeImportFailed) as caught:
        run_import(tenant_a, kb, connection)
    assert not caught.value.transient and "not-the-password-Zq9" not in str(caught.value)


def test_disabled_or_unsupported_connection_is_refused(
    tenant_a: Tenant, kb: KnowledgeBase, sn: ServiceNowSimulator
) -> None:
    connection = connect(tenant_a, sn, "servicenow")
    connection_set_enabled(connection=connection, tenant=tenant_a, enabled=False)
    with pytest.raises(Conflict, match="disabled"):
        run_import(tenant_a, kb, connection)
    hubspot = Connection(kind="hubspot", name="hs", tenant_id=tenant_a.id)
    with pytest.raises(Conflict, match="ServiceNow and Salesforce"):
        run_import(tenant_a, kb, hubspot)


def test_residency_policy_is_checked_before_reading(
    tenant_a: Tenant, kb: KnowledgeBase, sn: ServiceNowSimulator
) -> None:
    policy_apply_preset(tenant=tenant_a, preset="lenient")
    connection = connect(tenant_a, sn, "servicenow", region="us")
    policy_apply_preset(tenant=tenant_a, preset="strict")
    with pytest.raises(TransferRefused):
        run_import(tenant_a, kb, connection)
    with tenant_context(tenant_a):
        assert Article.objects.count() == 0
        assert AuditEvent.objects.filter(action="policy.transfer_refused").count() == 1


def test_connection_of_another_tenant_cannot_be_used(
    tenant_a: Tenant, tenant_b: Tenant, kb: KnowledgeBase, sn: ServiceNowSimulator
) -> None:
    other = connect(tenant_b, sn, "servicenow", name="B's ServiceNow")
    with pytest.raises(NotFound):
        run_import(tenant_a, kb, other)
    with pytest.raises(CommandError, match="No connection"):
        call_command(
            "kb_import_connection", tenant="tenant-a", kb=kb.name, connection=other.name, stdout=io.StringIO()
        )
    kwargs = {"tenant_id": tenant_a.id, "kb_id": str(kb.pk), "connection_id": str(other.pk)}
    assert knowledge_import_connection_task.apply(kwargs=kwargs).get() is None
    with tenant_context(tenant_a):
        assert Article.objects.count() == 0
    with tenant_context(tenant_b):
        assert Article.objects.count() == 0


# --- entry points --------------------------------------------------------------------------------------
def test_command_imports_publishes_and_lists_errors(
    tenant_a: Tenant, kb: KnowledgeBase, sn: ServiceNowSimulator
) -> None:
    connect(tenant_a, sn, "servicenow", name="Service desk")
    sn_add(sn, 10, language="tlh")
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="1 records were not imported"):
        call_command(
            "kb_import_connection",
            tenant="tenant-a",
            kb=kb.name,
            connection="Service desk",
            publish=True,
            index_now=True,
            stdout=out,
            stderr=err,
        )
    assert "Read 11 records from Service desk: 10 texts saved, 0 unchanged, 10 published" in out.getvalue()
    assert "KB0000011" in err.getvalue() and "'tlh'" in err.getvalue()
    with tenant_context(tenant_a):
        assert Translation.objects.filter(status=Status.PUBLISHED).count() == 10
        assert Chunk.objects.values("translation").distinct().count() == 10
    with pytest.raises(CommandError, match="No knowledge base"):
        call_command("kb_import_connection", tenant="tenant-a", kb="Nope", connection="Service desk")


def test_task_imports_and_retries_transient_failures(
    tenant_a: Tenant, alice: Any, kb: KnowledgeBase, sn: ServiceNowSimulator, settings: Any, run_tasks: Any
) -> None:
    connection = connect(tenant_a, sn, "servicenow")
    kwargs = {
        "tenant_id": tenant_a.id,
        "kb_id": str(kb.pk),
        "connection_id": str(connection.pk),
        "actor_id": alice.pk,
        "publish": True,
    }
    settings.HUB_SYNC_MAX_RETRIES = 1
    settings.HUB_SYNC_RETRY_MAX_SECONDS = 1
    sn.inject(outage="503")
    failed = knowledge_import_connection_task.apply(kwargs=kwargs).get()  # eager: the retry runs inline
    assert "Nothing was imported" in failed["error"]
    sn.clear_faults()
    done = knowledge_import_connection_task.apply(kwargs=kwargs).get()
    assert (done["saved"], done["published"], done["errors"]) == (10, 10, [])
    with tenant_context(tenant_a):
        assert Revision.objects.filter(author_id=alice.pk).count() == 10


# --- a real worker -------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_queued_import_runs_in_a_real_worker_through_an_outage(
    tenant_a: Tenant, alice: Any, sn: ServiceNowSimulator, tmp_path: Path
) -> None:
    """Queued from the console path, the task meets a vendor outage, retries, then imports and indexes."""
    from django.db import connections, transaction

    from apps.knowledge.importing import kb_import_connection_queue
    from apps.knowledge.services import kb_create
    from tests.fixtures.processes import Worker

    alias = tenant_a.home_region.db_alias
    with tenant_context(tenant_a):
        kb = kb_create(tenant=tenant_a, name="Docs", source_locale="en", enabled_locales=LOCALES, actor=alice)
    connection = connect(tenant_a, sn, "servicenow")
    seen = 0
    dispatch = sn.dispatch

    def counting(request: Any) -> Any:
        nonlocal seen
        seen += 1
        return dispatch(request)

    sn.dispatch = counting  # type: ignore[method-assign]
    sn.inject(outage="503")
    worker = Worker(tmp_path / "worker.log", "", queues="default", name="kbimport")
    worker.start()
    chunks = Chunk.all_tenants.using(alias).filter(kb_id=kb.pk)
    try:
        with tenant_context(tenant_a), transaction.atomic(using=alias):
            kb_import_connection_queue(kb=kb, connection=connection, actor=alice, publish=True)
        deadline = time.monotonic() + 60
        while seen == 0:
            assert time.monotonic() < deadline, f"the worker never called the vendor; see {worker.log}"
            time.sleep(0.2)
        assert not Translation.all_tenants.using(alias).filter(article__kb_id=kb.pk).exists()
        sn.clear_faults()
        deadline = time.monotonic() + 90
        while chunks.values("translation").distinct().count() < 10:
            assert time.monotonic() < deadline, f"not imported and indexed in time; see {worker.log}"
            time.sleep(0.5)
    finally:
        worker.stop()
        connections.close_all()
    translations = Translation.all_tenants.using(alias).filter(article__kb_id=kb.pk)
    assert translations.filter(status=Status.PUBLISHED).count() == 10
    assert Revision.all_tenants.using(alias).filter(translation__article__kb_id=kb.pk).count() == 10
    assert (
        AuditEvent.all_tenants.using(alias).filter(tenant_id=tenant_a.id, action="knowledge.imported").count()
        == 1
    )


# --- console ---------------------------------------------------------------------------------------------
def test_console_queues_an_import_and_lists_only_importable_connections(
    client: Any, alice: Any, bob: Any, tenant_a: Tenant, kb: KnowledgeBase, sn: ServiceNowSimulator
) -> None:
    from unittest import mock

    from django.urls import reverse

    connection = connect(tenant_a, sn, "servicenow", name="ServiceNow")
    url = reverse("knowledge:kb-detail", kwargs={"tenant_slug": tenant_a.slug, "kb_id": kb.pk})
    post = reverse("knowledge:kb-import-connection", kwargs={"tenant_slug": tenant_a.slug, "kb_id": kb.pk})
    login_verified(client, alice)
    page = client.get(url).content.decode()
    assert "Import from a connection" in page and "ServiceNow (servicenow)" in page
    with (
        mock.patch.object(knowledge_import_connection_task, "delay") as delay,
        mock.patch("apps.knowledge.services._on_commit", lambda func, using: func()),
    ):
        response = client.post(post, {"connection": str(connection.pk), "publish": "on"})
        assert response.status_code == 302
        assert delay.call_args.kwargs["connection_id"] == str(connection.pk)
        assert delay.call_args.kwargs["publish"] is True
        bad = client.post(post, {"connection": "not-a-connection"}, follow=True)
        assert "Choose a ServiceNow or Salesforce connection" in bad.content.decode()
        assert delay.call_count == 1
    client.logout()
    login_verified(client, bob)
    assert client.post(post, {"connection": str(connection.pk)}).status_code == 403
