"""Console dashboards: values from real conversations, windows, empty states, access, query counts, locale."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.chat.models import LlmUsage
from apps.console.selectors.dashboards import WINDOWS, bucket_starts, platform_dashboard, tenant_dashboard
from apps.core.context import tenant_context
from apps.integrations.models import DeadLetter, DeadLetterKind, SyncRun
from apps.integrations.resilience import breaker_for
from apps.knowledge.demo import seed_demo_knowledge
from apps.knowledge.selectors import kb_list, kbs_coverage
from apps.tenants import roles
from apps.tenants.models import Role, Tenant
from tests.console.helpers import page_queries, servicenow, turns
from tests.fixtures.auth import login_verified
from tests.fixtures.chat import IssuedKey

pytestmark = pytest.mark.django_db

JSON = "application/json"
SWALLOW = "What is the airspeed of a swallow?"  # no knowledge, no intent: a fallback


def url(tenant: Tenant, window: str = "") -> str:
    base = reverse("console:dashboard", kwargs={"tenant_slug": tenant.slug})
    return f"{base}?window={window}" if window else base


def chat(key: IssuedKey, texts: list[str]) -> str:
    """One conversation through the real chat API; returns its id."""
    client = Client()
    started = client.post("/api/v1/conversations", {}, content_type=JSON, **key.headers)
    assert started.status_code == 201, started.content
    conversation_id = str(started.json()["id"])
    for text in texts:
        response = client.post(
            f"/api/v1/conversations/{conversation_id}/messages",
            {"text": text},
            content_type=JSON,
            **key.headers,
        )
        assert response.status_code == 200, response.content
    return conversation_id


def usage(tenant: Tenant, *, region: str, channel: str, model: str, cost: str, tokens: int = 100) -> None:
    with tenant_context(tenant):
        LlmUsage.objects.create(
            channel_kind=channel,
            region=region,
            model=model,
            prompt_tokens=tokens,
            completion_tokens=0,
            cost_usd=Decimal(cost),
        )


# --- values ------------------------------------------------------------------------------------------------
def test_three_fallbacks_of_ten_turns_is_thirty_percent(
    alice_client: Client, tenant_a: Tenant, api_key_a: IssuedKey
) -> None:
    chat(api_key_a, [SWALLOW] * 3 + ["Hello!"] * 4)
    chat(api_key_a, ["Hello!"] * 3)
    with tenant_context(tenant_a):
        data = tenant_dashboard(window=WINDOWS["24h"])
    assert data.summary.turns == 10
    assert data.summary.by_outcome["fallback"] == 3
    assert data.summary.fallback_rate == pytest.approx(30.0)
    assert data.summary.handoff_rate == 0.0
    assert data.conversation_total == 2
    assert sum(data.turns_by_outcome["fallback"]) == 3
    assert data.summary.p50 is not None and data.summary.p95 is not None
    assert data.summary.p50 <= data.summary.p95
    [web] = data.channels
    assert (web.channel_kind, web.conversations, web.summary.turns) == ("web", 2, 10)

    response = alice_client.get(url(tenant_a))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-kpi="fallback"><dt>Fallback rate</dt><dd>30.0 %</dd>' in html
    assert 'data-kpi="turns"><dt>Turns</dt><dd>10</dd>' in html
    assert 'role="img"' in html and '<title id="chart-outcomes-title">' in html
    assert '<desc id="chart-latency-desc">' in html
    assert html.count('<details class="chart-data">') == 3  # every chart has its data table


def test_latency_percentiles_are_computed_in_sql_and_windows_filter(tenant_a: Tenant) -> None:
    turns(tenant_a, outcomes=["answered"] * 10, latencies=[100.0 * n for n in range(1, 11)])
    turns(tenant_a, outcomes=["handoff", "error"], latencies=[5000.0, 5000.0], age=timedelta(days=2))
    with tenant_context(tenant_a):
        day = tenant_dashboard(window=WINDOWS["24h"])
        week = tenant_dashboard(window=WINDOWS["7d"])
        hour = tenant_dashboard(window=WINDOWS["1h"])
    # percentile_cont interpolates: 100..1000 → p50 550, p95 955.
    assert day.summary.turns == 10
    assert day.summary.p50 == pytest.approx(550.0)
    assert day.summary.p95 == pytest.approx(955.0)
    assert day.summary.handoff_rate == 0.0
    assert (len(hour.starts), len(day.starts), len(week.starts)) == (60, 24, 28)
    assert hour.summary.turns == 10
    # A week also holds the back-dated conversation: 12 turns, one handoff and one error.
    assert week.summary.turns == 12
    assert week.summary.handoff_rate == pytest.approx(100 / 12)
    assert week.summary.error_rate == pytest.approx(100 / 12)
    assert week.conversation_total == 2
    # The recent turns sit in the last bucket, the old ones eight buckets (2 days of 6 h) before it.
    assert day.turns_by_outcome["answered"][-1] == 10
    assert week.turns_by_outcome["handoff"][-9:-7] in ([1, 0], [0, 1])
    assert day.p50[-1] == pytest.approx(550.0)
    assert day.p50[0] is None  # no turns in that hour: no value, not a zero


def test_bucket_starts_cover_the_window_up_to_now() -> None:
    now = timezone.now()
    for window in WINDOWS.values():
        starts = bucket_starts(now=now, window=window)
        assert starts[0] <= now - window.span + window.step
        assert starts[-1] <= now < starts[-1] + window.step
        assert all(b - a == window.step for a, b in itertools.pairwise(starts))


def test_costs_by_region_channel_and_model(alice_client: Client, tenant_a: Tenant) -> None:
    usage(tenant_a, region="eu", channel="web", model="gpt-4o-mini", cost="0.5000")
    usage(tenant_a, region="eu", channel="whatsapp", model="gpt-4o-mini", cost="0.2500")
    usage(tenant_a, region="us", channel="web", model="llama-3", cost="1.0000")
    with tenant_context(tenant_a):
        data = tenant_dashboard(window=WINDOWS["24h"])
    assert data.cost_total == Decimal("1.75")
    assert data.cost_by("region") == [("us", 1.0), ("eu", 0.75)]
    assert data.cost_by("channel_kind") == [("web", 1.5), ("whatsapp", 0.25)]
    assert data.cost_by("model") == [("llama-3", 1.0), ("gpt-4o-mini", 0.75)]
    html = alice_client.get(url(tenant_a)).content.decode()
    assert "1.75 USD" in html
    assert 'id="chart-cost-model"' in html


def test_sync_health_shows_last_run_breaker_and_dead_letters(alice_client: Client, tenant_a: Tenant) -> None:
    connection = servicenow(tenant_a)
    with tenant_context(tenant_a):
        run = SyncRun.objects.create(
            connection=connection, stream="tickets", trigger="manual", status="failed"
        )
        DeadLetter.objects.create(
            kind=DeadLetterKind.SYNC, connection=connection, stream="tickets", sync_run=run
        )
    breaker = breaker_for(connection)
    for _ in range(20):
        breaker.record_failure()
    with tenant_context(tenant_a):
        [row] = tenant_dashboard(window=WINDOWS["24h"]).sync
    assert row.dead_letters == 1
    assert row.last_run.pk == run.pk
    assert row.overview.breaker.state == "open"
    html = alice_client.get(url(tenant_a)).content.decode()
    assert 'class="badge status-failed">Failed</span>' in html
    assert 'class="badge breaker-open">Open</span>' in html
    assert '<td class="dead-letters">1</td>' in html


def test_translation_coverage_sums_the_knowledge_bases_per_locale(
    alice_client: Client, tenant_a: Tenant
) -> None:
    seed_demo_knowledge([tenant_a])
    with tenant_context(tenant_a):
        data = tenant_dashboard(window=WINDOWS["24h"])
        expected: dict[str, list[int]] = {}
        for rows in kbs_coverage(kbs=list(kb_list())).values():
            for cov in rows:
                entry = expected.setdefault(cov.locale, [0, 0])
                entry[0] += cov.published
                entry[1] += cov.total
    assert {row.locale: [row.published, row.total] for row in data.coverage} == expected
    en = next(row for row in data.coverage if row.locale == "en")
    assert en.total > 0 and en.percent == pytest.approx(100 * en.published / en.total)
    html = alice_client.get(url(tenant_a)).content.decode()
    assert 'id="chart-coverage"' in html and 'data-locale="en"' in html


# --- empty, bad input, access ------------------------------------------------------------------------------
def test_empty_dashboard_says_so(alice_client: Client, tenant_a: Tenant) -> None:
    response = alice_client.get(url(tenant_a))
    assert response.status_code == 200
    html = response.content.decode()
    assert "No conversations in this period" in html
    assert "No connections yet" in html
    assert "No LLM cost in this period" in html
    assert "No knowledge bases yet" in html
    assert 'data-kpi="fallback"><dt>Fallback rate</dt><dd>—</dd>' in html  # no turns: no rate, not 0 %
    assert "<svg" not in html


def test_unknown_window_is_400_with_a_field_error(
    alice_client: Client, tenant_a: Tenant, operator: Any
) -> None:
    response = alice_client.get(url(tenant_a, "5y"))
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="window-error"' in html and "5y" in html
    assert "Conversations and answers" not in html
    operator_client = Client()
    login_verified(operator_client, operator)
    assert operator_client.get(reverse("console:platform-dashboard") + "?window=x").status_code == 400


@pytest.mark.parametrize("window", ["1h", "24h", "7d"])
def test_every_window_renders(alice_client: Client, tenant_a: Tenant, window: str) -> None:
    turns(tenant_a, outcomes=["answered", "fallback"])
    response = alice_client.get(url(tenant_a, window))
    assert response.status_code == 200
    assert 'data-kpi="fallback"><dt>Fallback rate</dt><dd>50.0 %</dd>' in response.content.decode()


def test_other_tenants_member_gets_404_and_anonymous_is_sent_to_login(
    tenant_a: Tenant, charlie: Any, bob_client: Client
) -> None:
    client = Client()
    client.force_login(charlie)
    assert client.get(url(tenant_a)).status_code == 404
    assert client.get(reverse("console:platform-dashboard")).status_code == 404
    assert bob_client.get(url(tenant_a)).status_code == 200  # a viewer may look
    assert bob_client.get(reverse("console:platform-dashboard")).status_code == 404  # operators only
    anonymous = Client().get(url(tenant_a))
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert Client().get(reverse("console:platform-dashboard")).status_code == 302


def test_member_without_the_dashboard_permission_gets_403(
    bob_client: Client, tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every shipped role may view dashboards; a deployment that narrows the viewer role must get a 403.
    narrowed = roles.ROLE_PERMISSIONS[Role.VIEWER] - {roles.VIEW_DASHBOARDS}
    monkeypatch.setitem(roles.ROLE_PERMISSIONS, Role.VIEWER, narrowed)
    assert bob_client.get(url(tenant_a)).status_code == 403
    home = bob_client.get(reverse("console:tenant-home", kwargs={"tenant_slug": tenant_a.slug}))
    assert url(tenant_a) not in home.content.decode()  # and the navigation does not offer it


# --- queries and locale ------------------------------------------------------------------------------------
def test_query_count_does_not_grow_with_data(alice_client: Client, tenant_a: Tenant) -> None:
    turns(tenant_a, outcomes=["answered"])
    servicenow(tenant_a)
    seed_demo_knowledge([tenant_a])  # without any knowledge base the coverage needs no query at all
    few = page_queries(alice_client, url(tenant_a, "7d"))
    for n in range(5):
        turns(tenant_a, outcomes=["answered", "fallback", "handoff"], age=timedelta(hours=n * 7))
        usage(tenant_a, region="eu", channel="web", model=f"model-{n}", cost="0.01")
        connection = servicenow(tenant_a, name=f"SN {n}")
        with tenant_context(tenant_a):
            SyncRun.objects.create(
                connection=connection, stream="tickets", trigger="manual", status="succeeded"
            )
    many = page_queries(alice_client, url(tenant_a, "7d"))
    assert many == few
    assert many <= 25  # session, user, tenant, membership and about a dozen aggregates


def test_german_user_sees_german_numbers(alice_client: Client, alice: Any, tenant_a: Tenant) -> None:
    alice.language = "de"
    alice.save(update_fields=["language"])
    turns(tenant_a, outcomes=["answered"] * 3, latencies=[1234.5] * 3)
    usage(tenant_a, region="eu", channel="web", model="gpt-4o-mini", cost="1234.5")
    response = alice_client.get(url(tenant_a))
    html = response.content.decode()
    assert response["Content-Language"] == "de"
    assert "1.234,5 ms" in html  # p50 of three turns of 1234.5 ms, grouped the German way
    assert "1.234,50 USD" in html
    assert 'viewBox="0 0 640 220"' in html  # chart geometry is never localized
    assert "1234,5" not in html.split("<svg", 1)[1].split("</svg>", 1)[0].split("<title>")[0]


# --- operators ---------------------------------------------------------------------------------------------
def test_platform_dashboard_covers_every_region(
    operator: Any, tenant_a: Tenant, tenant_b: Tenant, charlie: Any
) -> None:
    turns(tenant_a, outcomes=["answered", "fallback", "answered", "answered"])
    turns(tenant_b, outcomes=["handoff", "answered"], latencies=[200.0, 400.0])
    usage(tenant_b, region="us", channel="web", model="gpt-4o-mini", cost="0.30")
    connection = servicenow(tenant_a)
    with tenant_context(tenant_a):
        DeadLetter.objects.create(kind=DeadLetterKind.SYNC, connection=connection, stream="tickets")
    data = platform_dashboard(window=WINDOWS["24h"])
    rows = {row.tenant.slug: row for row in data.tenants}
    assert rows["tenant-a"].summary.fallback_rate == pytest.approx(25.0)
    assert rows["tenant-a"].dead_letters == 1 and rows["tenant-a"].connections == 1
    assert rows["tenant-b"].summary.handoff_rate == pytest.approx(50.0)
    assert rows["tenant-b"].summary.p50 == pytest.approx(300.0)
    assert rows["tenant-b"].cost_usd == Decimal("0.30")
    assert data.conversation_total == 2
    assert sum(data.turns_by_outcome["answered"]) == 4
    assert data.unavailable_regions == []

    client = Client()
    login_verified(client, operator)
    response = client.get(reverse("console:platform-dashboard"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-tenant="tenant-a"' in html and 'data-tenant="tenant-b"' in html
    assert '<td class="fallback">25.0 %</td>' in html
    assert '<td class="handoff">50.0 %</td>' in html
    assert reverse("console:dashboard", kwargs={"tenant_slug": "tenant-b"}) in html
