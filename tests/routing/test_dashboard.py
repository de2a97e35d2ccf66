"""Dashboard figures of issue 18: handoffs, median time to the first agent reply, CSAT (1-5) average and
count per channel kind, locale and region; other tenants' ratings never counted; answer ratings are not
CSAT; the page shows them in a fixed number of queries."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.chat.models import Conversation, Feedback, FeedbackKind, Handoff
from apps.console.selectors.dashboards import WINDOWS, handoff_figures, tenant_dashboard
from apps.core.context import tenant_context
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db


def handed_off(
    tenant: Tenant, *, kind: str, locale: str, region: str, reply_after: int | None, csat: int | None
) -> None:
    """A conversation handed off now, answered after `reply_after` seconds, rated `csat`."""
    with tenant_context(tenant):
        conversation = Conversation.objects.create(
            channel_id=uuid.uuid4(), channel_kind=kind, locale=locale, region=region
        )
        handoff = Handoff.objects.create(
            conversation=conversation, connection_id=uuid.uuid4(), state="resolved"
        )
        if reply_after is not None:
            Handoff.objects.filter(pk=handoff.pk).update(
                first_agent_reply_at=handoff.created_at + timedelta(seconds=reply_after)
            )
        if csat is not None:
            Feedback.objects.create(
                conversation=conversation, rating=csat, kind=FeedbackKind.CSAT, handoff=handoff
            )
        Feedback.objects.create(conversation=conversation, rating=-1)  # an answer's thumbs down: not CSAT


@pytest.fixture
def rated(tenant_a: Tenant, tenant_b: Tenant) -> None:
    handed_off(tenant_a, kind="web", locale="de", region="eu", reply_after=60, csat=5)
    handed_off(tenant_a, kind="web", locale="en", region="", reply_after=120, csat=4)
    handed_off(tenant_a, kind="whatsapp", locale="de", region="us", reply_after=600, csat=1)
    handed_off(tenant_a, kind="whatsapp", locale="de", region="eu", reply_after=None, csat=None)
    handed_off(tenant_b, kind="web", locale="en", region="us", reply_after=5, csat=1)


def rows(items: list[Any]) -> dict[str, tuple[float | None, int]]:
    return {row.key: (row.average, row.count) for row in items}


def test_figures(rated: None, tenant_a: Tenant) -> None:
    with tenant_context(tenant_a):
        figures = handoff_figures(since=timezone.now() - timedelta(hours=1))
    assert (figures.handoffs, figures.answered, figures.median_first_reply) == (4, 3, 120.0)
    assert (figures.csat.average, figures.csat.count) == (10 / 3, 3)
    assert rows(figures.by_channel) == {"web": (4.5, 2), "whatsapp": (1.0, 1)}
    assert rows(figures.by_locale) == {"de": (3.0, 2), "en": (4.0, 1)}
    # An empty conversation region is the tenant's home region (eu).
    assert rows(figures.by_region) == {"eu": (4.5, 2), "us": (1.0, 1)}


def test_nothing_yet(tenant_a: Tenant) -> None:
    with tenant_context(tenant_a):
        figures = tenant_dashboard(window=WINDOWS["24h"]).handoffs
    assert (figures.handoffs, figures.median_first_reply, figures.csat.count, figures.csat.average) == (
        0,
        None,
        0,
        None,
    )


def test_page_shows_them_in_fixed_queries(alice_client: Client, tenant_a: Tenant, tenant_b: Tenant) -> None:
    url = reverse("console:dashboard", kwargs={"tenant_slug": tenant_a.slug})
    empty = alice_client.get(url)
    assert "No handoffs in this period" in empty.content.decode()
    handed_off(tenant_a, kind="web", locale="de", region="eu", reply_after=60, csat=5)
    with CaptureQueriesContext(connections["region_eu"]) as few:
        alice_client.get(url)
    for i in range(5):
        handed_off(tenant_a, kind=["sms", "slack"][i % 2], locale=f"l{i}", region="eu", reply_after=i, csat=3)
    with CaptureQueriesContext(connections["region_eu"]) as many:
        page = alice_client.get(url)
    assert len(many) == len(few)
    text = page.content.decode()
    assert 'data-figure="handoffs">6<' in text
    assert 'data-figure="csat">3.33' in text and "ratings: 6" in text
    assert '<tr data-key="sms"><th scope="row">sms</th><td>3.00</td>' in text
    assert 'id="chart-csat-channel"' in text and "Average satisfaction rating (1 to 5)" in text
