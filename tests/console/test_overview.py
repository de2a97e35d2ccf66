"""The tenant overview (console home): what needs attention, per role, with links only where the member
may go; a fixed number of queries and one Redis round trip whatever the data; renders without Redis.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.console.selectors.overview import tenant_overview
from apps.core import deadlines
from apps.core.context import tenant_context
from apps.integrations import resilience
from apps.integrations.models import (
    Connection,
    DeadLetter,
    DeadLetterKind,
    DeadLetterStatus,
    OutboxMessage,
    OutboxStatus,
    StreamState,
)
from apps.integrations.resilience import breaker_for
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import kb_create, translation_save, translation_submit
from apps.tenants.models import Role, Tenant
from apps.tenants.services import membership_add
from tests.chaos.faults import StallProxy
from tests.console.helpers import count_queries, page_queries, servicenow, turns
from tests.factories import UserFactory
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db


def home(tenant: Tenant) -> str:
    return reverse("console:tenant-home", kwargs={"tenant_slug": tenant.slug})


def member(tenant: Tenant, username: str, role: str, **limits: Any) -> Client:
    """A client logged in as a new member of `tenant` with `role` (2FA verified, for roles that need it)."""
    user = UserFactory.create(username=username)
    membership_add(tenant=tenant, user=user, role=role, **limits)
    client = Client()
    login_verified(client, user)
    return client


def streams(connection: Connection, **ages: timedelta | None) -> None:
    """Stream states synced `age` ago (None: never), every 15 minutes."""
    now = timezone.now()
    with tenant_context_of(connection):
        for stream, age in ages.items():
            StreamState.objects.create(
                connection=connection,
                stream=stream,
                interval_seconds=900,
                last_success_at=None if age is None else now - age,
            )


def tenant_context_of(connection: Connection) -> Any:
    return tenant_context(Tenant.objects.get(pk=connection.tenant_id))


def dead_letters(connection: Connection, n: int, status: str = DeadLetterStatus.OPEN) -> None:
    with tenant_context_of(connection):
        for _ in range(n):
            DeadLetter.objects.create(
                kind=DeadLetterKind.SYNC, connection=connection, stream="tickets", status=status
            )


def outbox(connection: Connection, *attempts: int, status: str = OutboxStatus.PENDING) -> None:
    with tenant_context_of(connection):
        start = OutboxMessage.objects.filter(connection=connection).count()
        for i, tries in enumerate(attempts, start=start):
            OutboxMessage.objects.create(
                connection=connection,
                stream="leads",
                external_id=f"hub-{i}",
                ordering_key=f"k{i}",
                sequence=1,
                status=status,
                attempts=tries,
                next_attempt_at=timezone.now(),
            )


def knowledge(tenant: Tenant, name: str = "Help", *, submit: bool = True) -> KnowledgeBase:
    """A base in en (source) and de with one English text; submitted for review unless told otherwise."""
    with tenant_context(tenant):
        kb = kb_create(tenant=tenant, name=name, source_locale="en", enabled_locales=["en", "de"])
        text = translation_save(kb=kb, key="returns", locale="en", title="Returns", body="Within 30 days.")
        if submit:
            translation_submit(translation=text)
    return kb


def main_html(response: Any) -> str:
    """The page's own content (below the heading), without the shell's navigation and breadcrumbs."""
    html = response.content.decode()
    return html.split("</h1>", 1)[1].split("</main>", 1)[0]


def links(html: str) -> list[str]:
    """The page links of `html` (not its stylesheets)."""
    return [href.replace("&amp;", "&") for href in re.findall(r'<a [^>]*href="(/[^"]*)"', html)]


def assert_every_link_opens(client: Client, html: str) -> None:
    """Links only to pages the member may open: each one answers 200 to them."""
    for href in links(html):
        response = client.get(href)
        assert response.status_code == 200, f"{href} -> {response.status_code}"


# --- values and links ---------------------------------------------------------------------------------------
def test_admin_sees_what_needs_attention_with_links(alice_client: Client, tenant_a: Tenant) -> None:
    connection = servicenow(tenant_a)
    streams(connection, tickets=timedelta(minutes=5), contacts=timedelta(hours=3), accounts=None)
    with tenant_context(tenant_a):  # set up an hour ago and never synced since: behind as well
        StreamState.objects.filter(stream="accounts").update(created_at=timezone.now() - timedelta(hours=1))
    for _ in range(20):
        breaker_for(connection).record_failure()
    dead_letters(connection, 2)
    dead_letters(connection, 1, status=DeadLetterStatus.DISCARDED)
    outbox(connection, 0, 0, 3)
    outbox(connection, 1, status=OutboxStatus.DELIVERED)
    quiet = servicenow(tenant_a, name="Quiet")
    kb = knowledge(tenant_a)
    turns(tenant_a, outcomes=["answered", "fallback", "answered", "answered"])
    turns(tenant_a, outcomes=["fallback"], age=timedelta(days=2))  # outside the 24 hours

    with tenant_context(tenant_a):
        data = tenant_overview(tenant=tenant_a, user=connection_admin(tenant_a), membership=None)
    assert data.connections is not None
    quiet_row, row = data.connections  # by name
    assert (row.connection.pk, quiet_row.connection.pk) == (connection.pk, quiet.pk)
    assert row.breaker == "open" and row.retry_at is not None and quiet_row.breaker == "closed"
    behind = [(s.stream, s.behind) for s in row.streams]
    assert behind == [("accounts", True), ("contacts", True), ("tickets", False)]
    assert row.max_lag is not None and row.max_lag > timedelta(hours=2, minutes=59)
    assert row.last_success_at == next(s.last_success_at for s in row.streams if s.stream == "tickets")
    assert (row.dead_letters, row.outbox_pending, row.outbox_retrying) == (2, 2, 1)
    assert (data.open_breakers, data.streams_behind, data.dead_letters, data.outbox_backlog) == (1, 2, 2, 3)
    assert data.knowledge_bases == 1 and data.coverage_gaps is not None
    assert {(gap.locale, gap.untranslated) for gap in data.coverage_gaps} == {("en", 1), ("de", 1)}
    assert data.reviews_waiting == 1
    assert data.chat is not None and data.chat.conversations == 1
    assert data.chat.summary.turns == 4 and data.chat.summary.fallback_rate == pytest.approx(25.0)
    assert not data.all_clear

    response = alice_client.get(home(tenant_a))
    assert response.status_code == 200
    html = main_html(response)
    slug = tenant_a.slug
    assert 'class="badge breaker-open">Open</span>' in html
    assert "1 connection has an open circuit breaker" in html
    assert "2 streams have not synced for more than two of their intervals." in html
    assert "2 dead letters are waiting for a replay or a discard." in html
    assert "1 outbox message failed and is being retried." in html
    assert "1 text waiting for review." in html
    assert 'data-kpi="fallback"><dt>Fallback rate</dt><dd>25.0 %</dd>' in html
    found = links(html)
    for expected in (
        reverse("integrations:connection-edit", kwargs={"tenant_slug": slug, "pk": connection.pk}),
        reverse("integrations:sync-stream", args=[slug, connection.pk, "contacts"]),
        reverse("integrations:deadletter-list", kwargs={"tenant_slug": slug})
        + f"?connection={connection.pk}&status=open",
        reverse("integrations:sync-overview", kwargs={"tenant_slug": slug}),
        reverse("knowledge:review-queue", kwargs={"tenant_slug": slug}),
        reverse("knowledge:kb-detail", kwargs={"tenant_slug": slug, "kb_id": kb.pk}),
        reverse("console:dashboard", kwargs={"tenant_slug": slug}) + "?window=24h",
        reverse("chat:conversation-list", kwargs={"tenant_slug": slug}),
    ):
        assert expected in found, expected
    assert_every_link_opens(alice_client, html)


def connection_admin(tenant: Tenant) -> Any:
    """A platform operator: holds every permission, with no membership."""
    return UserFactory.create(username=f"op-{tenant.slug}", is_staff=True)


def test_empty_states_say_what_to_do_next(alice_client: Client, tenant_a: Tenant) -> None:
    response = alice_client.get(home(tenant_a))
    assert response.status_code == 200
    html = main_html(response)
    assert "Nothing needs your attention right now." in html
    assert "No connections yet" in html
    assert reverse("integrations:connection-create", kwargs={"tenant_slug": tenant_a.slug}) in html
    assert "No knowledge bases yet" in html
    assert "No conversations in the last 24 hours" in html
    assert "Home region" in html and "Your role" in html  # the tenant's facts stay
    assert_every_link_opens(alice_client, html)


def test_a_draft_is_a_coverage_gap_not_a_review(tenant_a: Tenant) -> None:
    knowledge(tenant_a, submit=False)
    with tenant_context(tenant_a):
        data = tenant_overview(tenant=tenant_a, user=connection_admin(tenant_a), membership=None)
    assert data.reviews_waiting == 0
    assert data.coverage_gaps and all(gap.kb.name == "Help" for gap in data.coverage_gaps)


# --- who sees what ------------------------------------------------------------------------------------------
def fill(tenant: Tenant, n: int = 0) -> Connection:
    """Something in every section: the `n`th connection (three streams, a dead letter, two outbox messages),
    knowledge base and conversation."""
    connection = servicenow(tenant, name=f"SN {n}" if n else "ServiceNow")
    streams(connection, tickets=timedelta(hours=3), contacts=timedelta(minutes=n), accounts=None)
    dead_letters(connection, 1)
    outbox(connection, 0, 2)
    knowledge(tenant, name=f"KB {n}")
    turns(tenant, outcomes=["answered", "fallback"])
    return connection


@pytest.fixture
def busy_tenant(tenant_a: Tenant, alice: Any) -> Connection:
    return fill(tenant_a)


SECTIONS = ("connections-heading", "knowledge-heading", "chat-heading")


@pytest.mark.parametrize(
    ("role", "limits", "visible", "hidden_text"),
    [
        (Role.VIEWER, {}, {"chat-heading"}, ["Dead letters", "review"]),
        (Role.CONNECTOR_MANAGER, {}, {"connections-heading", "chat-heading"}, ["waiting for review"]),
        (
            Role.LOCALIZATION_EDITOR,
            {"locales": ["de"]},
            {"knowledge-heading", "chat-heading"},
            ["Dead letters", "ServiceNow"],
        ),
        (Role.COMPLIANCE_OFFICER, {}, {"chat-heading"}, ["Dead letters", "ServiceNow", "review"]),
    ],
)
def test_each_role_sees_only_its_sections_and_links_it_may_open(
    busy_tenant: Connection,
    tenant_a: Tenant,
    role: str,
    limits: dict[str, Any],
    visible: set[str],
    hidden_text: list[str],
) -> None:
    client = member(tenant_a, f"member-{role}", role, **limits)
    response = client.get(home(tenant_a))
    assert response.status_code == 200
    html = main_html(response)
    assert {s for s in SECTIONS if f'id="{s}"' in html} == visible
    for text in hidden_text:
        assert text not in html, text
    assert_every_link_opens(client, html)
    if role == Role.LOCALIZATION_EDITOR:
        assert 'data-gap="' in html and ':de"' in html and ':en"' not in html  # only the locales they edit
        assert 'data-reviews="0"' in html  # the English text is not theirs to review


def test_a_member_without_the_dashboard_permission_sees_no_chat_figures(
    busy_tenant: Tenant, tenant_a: Tenant, bob_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.tenants import roles

    narrowed = roles.ROLE_PERMISSIONS[Role.VIEWER] - {roles.VIEW_DASHBOARDS}
    monkeypatch.setitem(roles.ROLE_PERMISSIONS, Role.VIEWER, narrowed)
    html = main_html(bob_client.get(home(tenant_a)))
    assert 'id="chat-heading"' not in html and "Fallback rate" not in html
    assert "Nothing needs your attention right now." in html


def test_other_tenants_member_gets_404(busy_tenant: Connection, tenant_a: Tenant, charlie: Any) -> None:
    client = Client()
    client.force_login(charlie)
    assert client.get(home(tenant_a)).status_code == 404


# --- cost ---------------------------------------------------------------------------------------------------
class RedisRoundTrips:
    """Counts round trips the breaker client (resilience.redis_client) makes: commands and pipelines."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        pool = resilience.redis_client().connection_pool
        for cls, name in ((redis.Redis, "execute_command"), (redis.client.Pipeline, "execute")):
            original = getattr(cls, name)

            def spy(client: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                if client.connection_pool is pool:
                    self.count += 1
                return _original(client, *args, **kwargs)

            monkeypatch.setattr(cls, name, spy)


def test_the_page_costs_the_same_queries_and_one_redis_round_trip_whatever_the_data(
    alice_client: Client, tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(tenant_a)
    redis_calls = RedisRoundTrips(monkeypatch)
    few = page_queries(alice_client, home(tenant_a))
    assert redis_calls.count == 1
    for n in range(1, 7):
        fill(tenant_a, n)
    redis_calls.count = 0
    many = page_queries(alice_client, home(tenant_a))
    assert redis_calls.count == 1  # every breaker in one pipeline
    assert many == few
    assert many <= 20  # session, user, tenant, membership, navigation, and the overview's eleven


def test_the_selector_alone_runs_at_most_eleven_queries(tenant_a: Tenant) -> None:
    connection = servicenow(tenant_a)
    streams(connection, tickets=timedelta(minutes=5))
    knowledge(tenant_a)
    operator = connection_admin(tenant_a)
    with tenant_context(tenant_a), count_queries() as contexts:
        tenant_overview(tenant=tenant_a, user=operator, membership=None)
    assert sum(len(c) for c in contexts) <= 11


# --- Redis trouble ------------------------------------------------------------------------------------------
@pytest.fixture
def breaker_redis_at(settings: Any) -> Iterator[Callable[[str], None]]:
    """Point the breaker client (not the cache, which holds the session) elsewhere; afterwards this process
    forgets the failure it saw (its "Redis is down" skip is process state) and reconnects to the real one."""

    def point(url: str) -> None:
        settings.REDIS_URL = url
        resilience.redis_client.cache_clear()

    yield point
    resilience.redis_client.cache_clear()
    deadlines.redis_health.succeeded()


def test_redis_down_the_page_renders_with_breakers_unknown(
    busy_tenant: Connection, alice_client: Client, tenant_a: Tenant, breaker_redis_at: Callable[[str], None]
) -> None:
    breaker_redis_at("redis://127.0.0.1:9/0")  # nothing listens on the discard port
    response = alice_client.get(home(tenant_a))
    assert response.status_code == 200
    html = main_html(response)
    assert 'class="badge breaker-unknown">Unknown</span>' in html
    assert "Breaker states cannot be read right now" in html
    assert "1 dead letter is waiting" in html and "Fallback rate" in html  # the database part is all there


def test_redis_paused_the_page_renders_within_the_socket_timeout(
    busy_tenant: Connection,
    alice_client: Client,
    tenant_a: Tenant,
    settings: Any,
    breaker_redis_at: Callable[[str], None],
) -> None:
    proxy = StallProxy(int(urlsplit(settings.REDIS_URL).port or 6379))
    try:
        breaker_redis_at(proxy.url_for(settings.REDIS_URL))
        assert "breaker-closed" in main_html(alice_client.get(home(tenant_a)))  # through the proxy
        proxy.stall()
        started = time.monotonic()
        response = alice_client.get(home(tenant_a))
        assert time.monotonic() - started < 3
        assert response.status_code == 200
        assert 'class="badge breaker-unknown">Unknown</span>' in main_html(response)
    finally:
        proxy.close()
