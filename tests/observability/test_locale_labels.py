"""The chat metrics' `locale` label (issue 21, seed 004): one of the tenant's configured languages or "other",
never what a client sent; learned without a query per turn, and current after the tenant's locales change."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.chat.models import Channel
from apps.core.context import tenant_context
from apps.integrations.models import OutboxMessage, OutboxStatus
from apps.observability import metrics
from apps.tenants.models import Tenant
from apps.tenants.services import tenant_update
from tests.chat.helpers import JSON, say, start
from tests.chat.widget_support import headers as widget_headers
from tests.chat.widget_support import start as widget_start
from tests.chat.widget_support import widget_enable
from tests.fixtures.chat import IssuedKey
from tests.fixtures.integrations import offline_connection
from tests.fixtures.metrics import scrape, value
from tests.handoff.support import hand_off, the_handoff

pytestmark = pytest.mark.django_db

TENANT_A = {"tenant": "tenant-a", "region": "eu", "channel": "web"}  # tenant_a enables en and de


def locales_of(families: dict[str, list[Any]], family: str, **labels: str) -> set[str]:
    return {
        s.labels["locale"]
        for s in families.get(family, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    }


def test_a_turn_in_de_is_counted_under_de_with_its_latency(api_client: Client, api_key_a: IssuedKey) -> None:
    before = scrape()
    conversation = start(api_client, api_key_a, locale="de-AT")  # a regional variant: its language
    assert say(api_client, api_key_a, conversation["id"], "Kann ich etwas zurückgeben?").status_code == 200
    assert say(api_client, api_key_a, conversation["id"], "Hallo").status_code == 200
    after = scrape()

    def moved(sample: str, **labels: str) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    assert moved("hub_chat_turns_total", outcome="fallback", locale="de", **TENANT_A) == 1  # no knowledge
    assert moved("hub_chat_turns_total", outcome="answered", locale="de", **TENANT_A) == 1  # small talk
    assert moved("hub_chat_turn_duration_seconds_count", region="eu", channel="web", locale="de") == 2
    assert moved("hub_chat_turns_total", outcome="fallback", locale="other", **TENANT_A) == 0


def test_an_unconfigured_or_odd_locale_is_counted_as_other(api_client: Client, api_key_a: IssuedKey) -> None:
    before = scrape()
    for locale in ("fr", "ja-JP", "tlh", "zz_ZZ", "DE-ch"):  # "DE-ch" is German all the same
        conversation = start(api_client, api_key_a, locale=locale)
        assert say(api_client, api_key_a, conversation["id"], "Hello").status_code == 200
    after = scrape()
    moved = {
        locale: value(after, "hub_chat_turns_total", outcome="answered", locale=locale, **TENANT_A)
        - value(before, "hub_chat_turns_total", outcome="answered", locale=locale, **TENANT_A)
        for locale in ("other", "de", "fr", "ja", "tlh", "zz")
    }
    assert moved == {"other": 4, "de": 1, "fr": 0, "ja": 0, "tlh": 0, "zz": 0}
    assert locales_of(after, "hub_chat_turns_total", tenant="tenant-a") <= {"en", "de", "other"}


def test_a_hostile_locale_or_accept_language_never_becomes_a_label(
    api_client: Client, api_key_a: IssuedKey, channel_a: Channel
) -> None:
    hostile = ['de"}\nhub_x 1', "<script>", "en-" + "x" * 300, "../../etc", "${jndi:ldap://x}"]
    for locale in hostile:
        response = api_client.post(
            "/api/v1/conversations", {"locale": locale}, content_type=JSON, **api_key_a.headers
        )
        assert response.status_code == 400, locale
    key = widget_enable(channel_a)
    browser = "de-DE;q=0.9, ${jndi:ldap://x}, " + "q" * 500 + ', tlh;q=0.1, "}'
    for languages in (hostile, ["xx-Evil", "tlh"], []):
        started = widget_start(api_client, channel_a, key, locales=languages)
        response = api_client.post(
            f"/widget/v1/{channel_a.pk}/conversations/{started['conversation_id']}/messages",
            {"text": "Hello"},
            content_type=JSON,
            **widget_headers(key, token=started["token"], HTTP_ACCEPT_LANGUAGE=browser),
        )
        assert response.status_code == 200, response.content
    families = scrape()
    seen = locales_of(families, "hub_chat_turns_total") | locales_of(
        families, "hub_chat_turn_duration_seconds"
    )
    assert locales_of(families, "hub_chat_turns_total", tenant="tenant-a") <= {"en", "de", "other"}
    for label in seen:  # whatever other tests counted: language codes and "other" only
        assert label == "other" or (
            label.isascii() and label.isalpha() and label.islower() and len(label) <= 3
        )


def test_the_label_set_stays_bounded_after_many_random_locales() -> None:
    rng = random.Random(21)
    alphabet = string.ascii_letters + string.digits + "-_ ;=\"'{}\n<>"
    tenant = "tenant-locales-fuzz"
    for _ in range(500):
        locale = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        if rng.random() < 0.5:  # well-formed codes too: "qk", "xyz-AB"
            locale = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.choice((2, 3))))
        metrics.observe_chat_turn(
            tenant=tenant, region="eu", channel="web", outcome="answered", seconds=0.01,
            locale=locale, locales=["en", "de-CH", "pt-BR", "pt-PT"],
        )  # fmt: skip
    for outcome in ("answered",):
        metrics.observe_chat_turn(
            tenant=tenant, region="eu", channel="web", outcome=outcome, seconds=0.01, locale="pt-PT",
            locales=["en", "de-CH", "pt-BR", "pt-PT"],
        )  # fmt: skip
    families = scrape()
    assert locales_of(families, "hub_chat_turns_total", tenant=tenant) == {"other", "pt"}
    assert value(families, "hub_chat_turns_total", tenant=tenant, locale="pt", outcome="answered") >= 1


def test_locale_label_takes_its_value_from_the_configured_list_only() -> None:
    enabled = ["de-CH", "en", "fr-CA", "bogus value", "EN", "zh-Hant"]
    assert metrics.configured_languages(enabled) == ("de", "en", "fr", "zh")
    assert metrics.locale_label("de", locales=enabled) == "de"
    assert metrics.locale_label("de-AT", locales=enabled) == "de"  # any variant of a configured language
    assert metrics.locale_label("FR_ca", locales=enabled) == "fr"
    assert metrics.locale_label("it", locales=enabled) == "other"
    assert metrics.locale_label("", locales=enabled) == "other"
    assert metrics.locale_label("de", locales=[]) == "other"  # nothing configured: nothing of its own
    many = [f"{a}{b}" for a in string.ascii_lowercase for b in string.ascii_lowercase]  # 676 languages
    assert len(metrics.configured_languages(many)) == metrics.MAX_LOCALE_LABELS
    assert metrics.locale_label("zz", locales=many) == "other"  # past the cap
    assert [metrics.feedback_rating(r) for r in (5, 4, 3, 2, 1, -1)] == ["up", "up", "neutral", "down", "down", "down"]  # fmt: skip # noqa: E501


def test_feedback_is_counted_up_and_down_per_locale(
    api_client: Client, api_key_a: IssuedKey, api_key_b: IssuedKey
) -> None:
    before = scrape()
    german = start(api_client, api_key_a, locale="de")
    french = start(api_client, api_key_a, locale="fr")
    for conversation, rating in ((german, 5), (german, 1), (german, 2), (french, 4), (german, 3)):
        response = api_client.post(
            f"/api/v1/conversations/{conversation['id']}/feedback",
            {"rating": rating},
            content_type=JSON,
            **api_key_a.headers,
        )
        assert response.status_code == 201, response.content
    for bad in (0, 6, "up"):  # refused: counted nowhere
        response = api_client.post(
            f"/api/v1/conversations/{german['id']}/feedback",
            {"rating": bad},
            content_type=JSON,
            **api_key_a.headers,
        )
        assert response.status_code == 400
    # The other tenant's key cannot rate tenant A's conversation (404), and nothing is counted for it.
    response = api_client.post(
        f"/api/v1/conversations/{german['id']}/feedback",
        {"rating": 5},
        content_type=JSON,
        **api_key_b.headers,
    )
    assert response.status_code == 404
    after = scrape()

    def moved(**labels: str) -> float:
        return value(after, "hub_chat_feedback_total", **TENANT_A, **labels) - value(
            before, "hub_chat_feedback_total", **TENANT_A, **labels
        )

    assert moved(locale="de", rating="up") == 1
    assert moved(locale="de", rating="down") == 2
    assert moved(locale="de", rating="neutral") == 1
    assert moved(locale="other", rating="up") == 1
    assert value(after, "hub_chat_feedback_total", tenant="tenant-b") == value(
        before, "hub_chat_feedback_total", tenant="tenant-b"
    )


def test_handoffs_opened_and_failed_are_counted_per_locale(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    from apps.chat.services.handoff_thread import handoff_refresh

    offline_connection(tenant_a, "servicenow")
    before = scrape()
    with django_capture_on_commit_callbacks(using=tenant_a.home_region.db_alias, execute=True):
        german, _turn = hand_off(api_client, api_key_a, locale="de")
        french, _turn = hand_off(api_client, api_key_a, locale="fr")
    handoff = the_handoff(tenant_a, french)
    with tenant_context(tenant_a):
        OutboxMessage.objects.filter(pk=handoff.ticket_outbox_id or 0).update(status=OutboxStatus.DEAD)
        refreshed = handoff_refresh(handoff_id=handoff.pk)
    assert refreshed is not None and refreshed.state == "failed"
    after = scrape()

    def moved(**labels: str) -> float:
        labels["connector"] = "servicenow"
        return value(after, "hub_handoffs_total", **labels) - value(before, "hub_handoffs_total", **labels)

    assert german != french
    assert moved(outcome="opened", locale="de") == 1
    assert moved(outcome="opened", locale="other") == 1
    assert moved(outcome="failed", locale="other") == 1
    assert moved(outcome="failed", locale="de") == 0


def test_no_query_per_turn_for_the_locales_and_a_change_is_seen_at_once(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    conversation = start(api_client, api_key_a, locale="fr")
    assert say(api_client, api_key_a, conversation["id"], "Hello").status_code == 200  # the key is cached
    with CaptureQueriesContext(connections["default"]) as control:
        assert say(api_client, api_key_a, conversation["id"], "Hello").status_code == 200
    tenant_tables = [q["sql"] for q in control.captured_queries if "tenants_tenant" in q["sql"]]
    assert tenant_tables == [], "the locales come with the cached API-key lookup"
    before = scrape()
    tenant_update(tenant=tenant_a, enabled_locales=["en", "de", "fr"])  # drops the cached key entries
    assert say(api_client, api_key_a, conversation["id"], "Hello").status_code == 200
    after = scrape()
    turns = "hub_chat_turns_total"
    assert (
        value(after, turns, outcome="answered", locale="fr", **TENANT_A)
        - value(before, turns, outcome="answered", locale="fr", **TENANT_A)
        == 1
    )
