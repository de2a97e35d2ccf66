"""/metrics: every catalog family, protected by token and/or allow-list, never behind login or 2FA."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.observability.metrics import METRIC_FAMILIES
from tests.fixtures.metrics import CATALOG, scrape

pytestmark = pytest.mark.django_db


def test_every_catalog_family_is_exposed_even_before_anything_happened() -> None:
    assert CATALOG <= METRIC_FAMILIES
    assert all(name.startswith("hub_") for name in METRIC_FAMILIES)
    families = scrape()
    assert set(METRIC_FAMILIES) <= set(families)


def test_loopback_only_when_neither_token_nor_allow_list_is_set(settings: Any) -> None:
    settings.HUB_METRICS_TOKEN, settings.HUB_METRICS_ALLOW = "", []
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="::1").status_code == 200
    response = Client().get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 403
    assert b"hub_" not in response.content


def test_bearer_token_is_required_when_configured(settings: Any) -> None:
    settings.HUB_METRICS_TOKEN, settings.HUB_METRICS_ALLOW = "s3cret-metrics-token", []
    anonymous = Client().get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert b"hub_" not in anonymous.content
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope", REMOTE_ADDR="203.0.113.9")
    assert wrong.status_code == 401
    basic = Client().get("/metrics", HTTP_AUTHORIZATION="Basic czNjcmV0", REMOTE_ADDR="203.0.113.9")
    assert basic.status_code == 401
    ok = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token", REMOTE_ADDR="203.0.113.9")
    assert ok.status_code == 200
    assert b"# TYPE hub_outbox_depth gauge" in ok.content
    assert ok["Content-Type"].startswith("text/plain")


def test_allow_list_refuses_other_networks(settings: Any) -> None:
    settings.HUB_METRICS_TOKEN, settings.HUB_METRICS_ALLOW = "", ["10.20.0.0/16", "2001:db8::/32"]
    assert Client().get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="2001:db8::7").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="10.21.0.1").status_code == 403
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403  # not listed: not special
    assert Client().get("/metrics", REMOTE_ADDR="garbage").status_code == 403


def test_token_and_allow_list_together_both_apply(settings: Any) -> None:
    settings.HUB_METRICS_TOKEN, settings.HUB_METRICS_ALLOW = "tok-123456", ["10.0.0.0/8"]
    auth = "Bearer tok-123456"
    assert Client().get("/metrics", REMOTE_ADDR="10.1.1.1", HTTP_AUTHORIZATION=auth).status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_AUTHORIZATION=auth).status_code == 403
    assert Client().get("/metrics", REMOTE_ADDR="10.1.1.1").status_code == 401


def test_only_get_is_allowed() -> None:
    assert Client().post("/metrics").status_code == 405


def test_not_behind_login_or_two_factor(client: Client, alice: Any) -> None:
    """A signed-in user who still owes a second factor is not redirected; nor is an anonymous scraper."""
    from apps.accounts.models import TOTPDevice

    TOTPDevice.objects.create(user=alice, name="phone", confirmed=True)
    client.force_login(alice)  # not OTP-verified
    assert client.get("/t/tenant-a/").status_code in (302, 403)  # the console holds the user back
    assert client.get("/metrics").status_code == 200
    assert Client().get("/metrics").status_code == 200


def test_settings_refuse_a_malformed_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from hub.settings.env import env_networks

    monkeypatch.setenv("HUB_METRICS_ALLOW", "10.0.0.0/8, not-a-network")
    with pytest.raises(ImproperlyConfigured, match="HUB_METRICS_ALLOW"):
        env_networks("HUB_METRICS_ALLOW", [])
    monkeypatch.setenv("HUB_METRICS_ALLOW", "10.0.0.0/8,192.0.2.7")
    assert env_networks("HUB_METRICS_ALLOW", []) == ["10.0.0.0/8", "192.0.2.7"]


def test_production_refuses_to_start_with_an_unprotected_metrics_endpoint() -> None:
    from tests.fixtures.processes import PRODUCTION_ENV, manage

    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "HUB_METRICS_TOKEN"}
    refused = manage(env, "check")
    assert refused.returncode != 0
    assert "HUB_METRICS_TOKEN or HUB_METRICS_ALLOW" in refused.stderr
    allowed = manage({**env, "HUB_METRICS_ALLOW": "10.0.0.0/8"}, "check")
    assert allowed.returncode == 0, allowed.stderr
