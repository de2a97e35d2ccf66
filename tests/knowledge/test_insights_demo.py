"""The demo (`seed_demo`, what `make run` seeds) gives both insights pages real numbers: answers citing
articles in several locales, rated up and down and handed off, and unanswered questions; seeding twice adds
nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from apps.chat.models import Conversation, Feedback, Handoff, Outcome
from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase
from apps.tenants.models import Tenant
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db


def test_the_demo_fills_both_insights_pages(regions: Any) -> None:
    from apps.console.demo import seed_demo

    seed_demo()
    acme = Tenant.objects.get(slug="acme")
    with tenant_context(acme):
        counts = (Conversation.objects.count(), Feedback.objects.count(), Handoff.objects.count())
        kb = KnowledgeBase.objects.get(name="Help center")
    assert counts[0] >= 25 and counts[1] >= 15 and counts[2] >= 4
    with tenant_context(acme):
        fallbacks = set(
            Conversation.objects.filter(messages__outcome=Outcome.FALLBACK).values_list("locale", flat=True)
        )
    assert len(fallbacks) >= 3, fallbacks
    seed_demo()
    with tenant_context(acme):
        assert (Conversation.objects.count(), Feedback.objects.count(), Handoff.objects.count()) == counts

    client = Client()
    login_verified(client, get_user_model().objects.get(username="alice"))
    detail = client.get(reverse("knowledge:kb-detail", kwargs={"tenant_slug": "acme", "kb_id": kb.pk}))
    assert detail.status_code == 200
    quality = re.findall(
        r'<tr class="quality" data-key="([^"]+)" data-locale="([^"]+)">.*?<td class="citations">(\d+)</td>'
        r'<td class="positive">(\d+)</td><td class="negative">(\d+)</td><td class="handoffs">(\d+)</td>',
        re.sub(r">\s+<", "><", detail.content.decode()),
        re.S,
    )
    assert len({locale for _key, locale, *_ in quality}) >= 3, quality
    assert sum(int(row[3]) for row in quality) > 0 and sum(int(row[4]) for row in quality) > 0
    assert sum(int(row[5]) for row in quality) > 0

    unanswered = client.get(reverse("knowledge:learning", kwargs={"tenant_slug": "acme", "kb_id": kb.pk}))
    assert unanswered.status_code == 200
    html = unanswered.content.decode()
    assert html.count('class="card learning-group"') >= 5
    assert len(set(re.findall(r'<tr class="place" data-locale="(\w+)"', html))) >= 4
