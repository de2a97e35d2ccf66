"""The tenant dashboard's Languages table (issue 21): 7 days per conversation locale, from the database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.chat.models import Conversation, Feedback, FeedbackKind, Message
from apps.console.selectors.languages import language_summary
from apps.core.context import tenant_context
from apps.tenants.models import Tenant
from tests.console.helpers import count_queries

pytestmark = pytest.mark.django_db


def conversation(
    tenant: Tenant, locale: str, outcomes: list[str], *, latency: float = 100.0, ratings: tuple[int, ...] = ()
) -> Conversation:
    """A conversation in `locale` with one assistant turn per outcome and answer ratings on its last reply."""
    with tenant_context(tenant):
        made = Conversation.objects.create(
            channel_id="00000000-0000-0000-0000-000000000001", channel_kind="web", locale=locale, region="eu"
        )
        reply = None
        for outcome in outcomes:
            question = Message.objects.create(conversation=made, role="user", text="q")
            reply = Message.objects.create(
                conversation=made, role="assistant", text="a", reply_to=question, outcome=outcome,
                latency_ms=latency,
            )  # fmt: skip
        for rating in ratings:
            Feedback.objects.create(conversation=made, message=reply, rating=rating, kind=FeedbackKind.ANSWER)
    return made


def age(tenant: Tenant, made: Conversation, days: int) -> None:
    then = timezone.now() - timedelta(days=days)
    with tenant_context(tenant):
        Conversation.objects.filter(pk=made.pk).update(created_at=then)
        Message.objects.filter(conversation=made).update(created_at=then)
        Feedback.objects.filter(conversation=made).update(created_at=then)


def test_rates_ratings_and_latency_per_locale_over_seven_days(
    alice_client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    conversation(tenant_a, "de", ["answered", "answered", "fallback"], latency=200.0, ratings=(5, 4, 1))
    conversation(tenant_a, "de", ["answered"], latency=400.0, ratings=(3,))
    conversation(tenant_a, "fr-CA", ["fallback", "handoff"], ratings=(2,))
    age(tenant_a, conversation(tenant_a, "ja", ["answered"] * 5, ratings=(5,)), days=8)  # before the window
    conversation(tenant_b, "de", ["fallback"] * 9, ratings=(1, 1))  # the other tenant's: never counted
    with tenant_context(tenant_a), count_queries() as contexts:
        rows = {row.locale: row for row in language_summary()}
    assert sum(len(c) for c in contexts) == 1  # one aggregate query, however many locales
    assert set(rows) == {"de", "fr-CA"}
    de, fr = rows["de"], rows["fr-CA"]
    assert (de.turns, de.answered, de.fallback, de.up, de.down) == (4, 3, 1, 2, 1)
    assert de.answer_rate == pytest.approx(75.0) and de.fallback_rate == pytest.approx(25.0)
    assert de.up_share == pytest.approx(200 / 3)  # the neutral 3 is left out
    assert de.p50 == pytest.approx(200.0)
    assert (fr.turns, fr.answer_rate, fr.fallback_rate, fr.up, fr.down, fr.up_share) == (
        2,
        0.0,
        50.0,
        0,
        1,
        0.0,
    )

    html = alice_client.get(
        reverse("console:dashboard", kwargs={"tenant_slug": tenant_a.slug})
    ).content.decode()
    assert 'aria-labelledby="languages-heading"' in html
    assert '<tr data-locale="de"><th scope="row">de</th>' in html
    assert '<td class="answer-rate">75.0 %</td>' in html and '<td class="p50">200.0 ms</td>' in html
    assert 'data-locale="ja"' not in html


def test_without_conversations_the_table_says_so(alice_client: Client, tenant_a: Tenant) -> None:
    with tenant_context(tenant_a):
        assert language_summary() == []
    response = alice_client.get(reverse("console:dashboard", kwargs={"tenant_slug": tenant_a.slug}))
    assert response.status_code == 200
    assert "No conversations in the last 7 days" in response.content.decode()
