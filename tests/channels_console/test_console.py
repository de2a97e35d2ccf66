"""Channel setup in the console: platform account per kind, test, webhook URL, delivery; widget key, origins,
identity secret shown once; viewer 403, other tenant 404, audit rows."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest
from django.test import Client

from apps.chat.models import Channel, ChannelKind
from apps.chat.services.channel_setup import channel_create_with_platform
from apps.chat.services.channels import channel_create
from apps.core.confirm import CONFIRMED
from apps.core.context import tenant_context
from apps.integrations.models import Connection, OutboxMessage, OutboxStatus
from apps.tenants.models import Tenant
from connectors.whatsapp.simulator import WhatsAppSimulator
from tests.channels_console.helpers import (
    audit_actions,
    audit_changes,
    connection_of,
    console_url,
    identity_secret,
    raw_credentials,
    wa_account,
)
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db


def _post_whatsapp(client: Client, tenant: Tenant, sim: WhatsAppSimulator, name: str = "WA") -> Any:
    settings_, credentials = wa_account(sim)
    data = {"name": name, "kind": "whatsapp", "default_locale": "en", "platform-endpoint_region": "eu"}
    data |= {f"platform-{k}": v for k, v in {**settings_, **credentials}.items()}
    return client.post(console_url("channel-create", tenant) + "?kind=whatsapp", data)


def test_create_whatsapp_channel_stores_the_account_encrypted_and_never_shows_it(
    alice_client: Client, tenant_a: Tenant, wa_sim: WhatsAppSimulator
) -> None:
    form = alice_client.get(console_url("channel-create", tenant_a) + "?kind=whatsapp").content.decode()
    assert 'name="platform-access_token"' in form and 'type="password"' in form
    response = _post_whatsapp(alice_client, tenant_a, wa_sim)
    assert response.status_code == 302, response.content.decode()[:3000]
    channel = Channel.objects.get(tenant=tenant_a, name="WA")
    connection = connection_of(tenant_a, channel.platform_connection_id)
    assert connection is not None and connection.kind == "whatsapp"
    with tenant_context(tenant_a):
        assert connection.secrets["access_token"] == wa_sim.access_token
        raw = raw_credentials(connection)
    assert raw and wa_sim.access_token not in raw
    page = alice_client.get(response["Location"]).content.decode()
    for secret in (wa_sim.access_token, wa_sim.app_secret, wa_sim.verify_token):
        assert secret not in page
    assert f"http://testserver/hooks/channels/{channel.pk}/" in page
    assert "Callback URL" in page  # the where-to-paste help of WhatsApp
    assert "Set — leave blank to keep it." in page
    assert "connection.created" in audit_actions(tenant_a)
    assert all(
        wa_sim.access_token not in json.dumps(c) for c in audit_changes(tenant_a, "connection.created")
    )


@pytest.mark.parametrize("kind", ["slack", "teams", "sms"])
def test_create_form_asks_for_each_platforms_fields(
    alice_client: Client, tenant_a: Tenant, kind: str
) -> None:
    from apps.integrations.conf import connector_class

    page = alice_client.get(console_url("channel-create", tenant_a) + f"?kind={kind}").content.decode()
    for field in connector_class(kind).config_schema:
        assert f'name="platform-{field.name}"' in page


def test_platform_kind_without_account_is_created_not_set_up(alice_client: Client, tenant_a: Tenant) -> None:
    response = alice_client.post(
        console_url("channel-create", tenant_a) + "?kind=slack",
        {"name": "Slack", "kind": "slack", "default_locale": "en", "platform-endpoint_region": "eu"},
    )
    assert response.status_code == 302
    channel = Channel.objects.get(tenant=tenant_a, name="Slack")
    assert channel.platform_connection_id is None
    assert "Not set up" in alice_client.get(response["Location"]).content.decode()


def test_bad_credentials_show_field_errors_and_leave_nothing_behind(
    alice_client: Client, tenant_a: Tenant, wa_sim: WhatsAppSimulator
) -> None:
    settings_, _creds = wa_account(wa_sim)
    data = {"name": "WA", "kind": "whatsapp", "default_locale": "en", "platform-endpoint_region": "eu"}
    data |= {f"platform-{k}": v for k, v in settings_.items()} | {"platform-access_token": "x"}
    response = alice_client.post(console_url("channel-create", tenant_a) + "?kind=whatsapp", data)
    assert response.status_code == 400
    assert not Channel.objects.filter(tenant=tenant_a).exists()
    with tenant_context(tenant_a):
        assert not Connection.objects.exists()


def test_duplicate_channel_name_removes_the_new_connection(
    alice_client: Client, tenant_a: Tenant, wa_sim: WhatsAppSimulator
) -> None:
    channel_create(tenant=tenant_a, name="WA", kind="web")
    response = _post_whatsapp(alice_client, tenant_a, wa_sim)
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    with tenant_context(tenant_a):
        assert not Connection.objects.exists()
    assert "connection.deleted" in audit_actions(tenant_a)


def test_test_button_with_the_platform_up_and_failing(
    alice_client: Client, tenant_a: Tenant, wa_sim: WhatsAppSimulator, caplog: Any
) -> None:
    _post_whatsapp(alice_client, tenant_a, wa_sim)
    channel = Channel.objects.get(tenant=tenant_a, name="WA")
    response = alice_client.post(console_url("channel-platform-test", tenant_a, channel.pk), follow=True)
    assert response.status_code == 200
    assert "Connected" in response.content.decode()
    wa_sim.inject(errors=[{"status": 503, "count": 5}])
    response = alice_client.post(console_url("channel-platform-test", tenant_a, channel.pk), follow=True)
    page = response.content.decode()
    assert response.status_code == 200 and "Test failed" in page and "unavailable" in page
    assert wa_sim.access_token not in page
    wa_sim.clear_faults()
    wa_sim.stop()  # down altogether: still a message, no 500
    response = alice_client.post(console_url("channel-platform-test", tenant_a, channel.pk), follow=True)
    assert response.status_code == 200 and "Test failed" in response.content.decode()
    assert audit_actions(tenant_a).count("connection.tested") == 3
    logged = caplog.text + json.dumps(audit_changes(tenant_a, "connection.tested"))
    assert all(s not in logged for s in (wa_sim.access_token, wa_sim.app_secret, wa_sim.verify_token))


def test_edit_keeps_blank_secrets_and_changes_entered_ones(
    alice_client: Client, tenant_a: Tenant, wa_sim: WhatsAppSimulator
) -> None:
    _post_whatsapp(alice_client, tenant_a, wa_sim)
    channel = Channel.objects.get(tenant=tenant_a, name="WA")
    settings_, _creds = wa_account(wa_sim)
    data = {f"platform-{k}": v for k, v in settings_.items()} | {
        "platform-endpoint_region": "eu",
        "platform-verify_token": "a-new-verify-token",
    }
    response = alice_client.post(console_url("channel-platform", tenant_a, channel.pk), data)
    assert response.status_code == 302
    connection = connection_of(tenant_a, channel.platform_connection_id)
    assert connection is not None
    with tenant_context(tenant_a):
        secrets = connection.secrets
    assert secrets["verify_token"] == "a-new-verify-token"
    assert secrets["access_token"] == wa_sim.access_token  # blank: kept
    assert "connection.credentials_changed" in audit_actions(tenant_a)


def test_delivery_status_lists_the_replies_of_the_account(
    alice_client: Client, tenant_a: Tenant, wa_sim: WhatsAppSimulator
) -> None:
    from django.utils import timezone

    _post_whatsapp(alice_client, tenant_a, wa_sim)
    channel = Channel.objects.get(tenant=tenant_a, name="WA")
    assert channel.platform_connection_id is not None
    with tenant_context(tenant_a):
        OutboxMessage.objects.create(
            connection_id=channel.platform_connection_id,
            stream="messages",
            external_id="reply:1",
            payload={},
            ordering_key="c1",
            sequence=1,
            status=OutboxStatus.PENDING,
            attempts=3,
            next_attempt_at=timezone.now(),
            last_error="The platform is unavailable (HTTP 503)",
        )
    page = alice_client.get(console_url("channel-detail", tenant_a, channel.pk)).content.decode()
    assert "The platform is unavailable (HTTP 503)" in page and "pending: 1" in page


def test_web_widget_key_snippet_rotate_and_preview(alice_client: Client, tenant_a: Tenant) -> None:
    response = alice_client.post(
        console_url("channel-create", tenant_a) + "?kind=web",
        {"name": "Site", "kind": "web", "default_locale": "en"},
    )
    channel = Channel.objects.get(tenant=tenant_a, name="Site")
    assert channel.widget_key and channel.widget_key.startswith("hubw_")
    page = html.unescape(alice_client.get(response["Location"]).content.decode())
    assert f'data-channel="{channel.pk}" data-key="{channel.widget_key}" async></script>' in page
    assert "http://testserver/static/widget/widget.js" in page
    old = channel.widget_key
    confirm = alice_client.get(console_url("channel-widget-rotate", tenant_a, channel.pk))
    assert confirm.status_code == 200 and old == Channel.objects.get(pk=channel.pk).widget_key
    alice_client.post(console_url("channel-widget-rotate", tenant_a, channel.pk), {**CONFIRMED})
    channel.refresh_from_db()
    assert channel.widget_key != old and channel.widget_key.startswith("hubw_")
    assert "channel.widget_key_rotated" in audit_actions(tenant_a)
    preview = alice_client.get(console_url("channel-preview", tenant_a, channel.pk))
    assert preview.status_code == 200 and f'data-key="{channel.widget_key}"' in preview.content.decode()
    assert preview["X-Frame-Options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in preview["Content-Security-Policy"]
    detail = alice_client.get(console_url("channel-detail", tenant_a, channel.pk))
    assert "frame-ancestors 'none'" in detail["Content-Security-Policy"]  # the rest stays strict


def test_allowed_origins_are_validated(alice_client: Client, tenant_a: Tenant, settings: Any) -> None:
    channel = channel_create_with_platform(tenant=tenant_a, channel_data={"name": "Site", "kind": "web"})
    url = console_url("channel-origins", tenant_a, channel.pk)
    bad = alice_client.post(url, {"allowed_origins": "https://shop.example.com/path\nftp://x.example\nnope"})
    assert bad.status_code == 400
    page = bad.content.decode()
    assert "is not an origin" in page and "ftp://x.example" in page
    channel.refresh_from_db()
    assert channel.allowed_origins == []
    ok = alice_client.post(url, {"allowed_origins": "https://Shop.Example.com\nhttp://localhost:3000\n"})
    assert ok.status_code == 302
    channel.refresh_from_db()
    assert channel.allowed_origins == ["https://shop.example.com", "http://localhost:3000"]
    settings.HUB_WIDGET_ORIGINS_REQUIRE_HTTPS = True
    refused = alice_client.post(url, {"allowed_origins": "http://shop.example.com\nhttp://localhost:3000"})
    assert refused.status_code == 400 and "must use https://" in refused.content.decode()
    assert "channel.setup_changed" in audit_actions(tenant_a)


def test_identity_secret_is_shown_once_and_rotation_is_confirmed_and_audited(
    alice_client: Client, tenant_a: Tenant
) -> None:
    channel = channel_create_with_platform(tenant=tenant_a, channel_data={"name": "Site", "kind": "web"})
    url = console_url("channel-identity-secret", tenant_a, channel.pk)
    first = alice_client.post(url, {**CONFIRMED})
    assert first.status_code == 201 and first["Cache-Control"] == "no-store"
    secret = identity_secret(channel)
    assert secret and secret in first.content.decode()
    detail = alice_client.get(console_url("channel-detail", tenant_a, channel.pk)).content.decode()
    assert secret not in detail and "user_hash" in detail
    confirm = alice_client.post(url)  # a secret exists: confirm first
    assert confirm.status_code in (200, 400) and "Generate secret" in confirm.content.decode()
    assert identity_secret(channel) == secret
    alice_client.post(url, {**CONFIRMED})
    assert identity_secret(channel) != secret
    rotated = audit_changes(tenant_a, "channel.identity_secret_rotated")
    assert len(rotated) == 2 and all(secret not in json.dumps(c) for c in rotated)
    response = alice_client.post(
        console_url("channel-identity", tenant_a, channel.pk), {"identity_mode": "hmac"}
    )
    assert response.status_code == 302
    assert Channel.objects.get(pk=channel.pk).identity_mode == "hmac"


def test_identity_mode_needs_a_secret(alice_client: Client, tenant_a: Tenant) -> None:
    channel = channel_create(tenant=tenant_a, name="Bot", kind=ChannelKind.CUSTOM)
    response = alice_client.post(
        console_url("channel-identity", tenant_a, channel.pk), {"identity_mode": "jwt"}
    )
    assert response.status_code == 400 and "identity secret first" in response.content.decode()


SETUP_PAGES = [
    ("get", "channel-detail"),
    ("post", "channel-platform"),
    ("post", "channel-platform-test"),
    ("post", "channel-origins"),
    ("post", "channel-identity"),
    ("post", "channel-identity-secret"),
    ("post", "channel-widget-rotate"),
    ("get", "channel-preview"),
]


@pytest.mark.parametrize(("method", "name"), SETUP_PAGES)
def test_other_tenants_channel_is_404(
    alice_client: Client, tenant_a: Tenant, tenant_b: Tenant, method: str, name: str
) -> None:
    other = channel_create_with_platform(tenant=tenant_b, channel_data={"name": "B", "kind": "web"})
    response = getattr(alice_client, method)(console_url(name, tenant_a, other.pk), {**CONFIRMED})
    assert response.status_code == 404
    assert identity_secret(other) is None


@pytest.mark.parametrize(("method", "name"), SETUP_PAGES)
def test_viewer_gets_403(client: Client, bob: Any, tenant_a: Tenant, method: str, name: str) -> None:
    channel = channel_create_with_platform(tenant=tenant_a, channel_data={"name": "A", "kind": "web"})
    login_verified(client, bob)
    response = getattr(client, method)(console_url(name, tenant_a, channel.pk), {**CONFIRMED})
    assert response.status_code == 403


SIMULATORS = {
    "whatsapp": "connectors.whatsapp.simulator.WhatsAppSimulator",
    "slack": "connectors.slack.simulator.SlackSimulator",
    "teams": "connectors.teams.simulator.TeamsSimulator",
    "sms": "connectors.twilio.simulator.TwilioSimulator",
}


@pytest.mark.parametrize("kind", sorted(SIMULATORS))
def test_each_platform_kind_created_through_the_console_and_tested(
    alice_client: Client, tenant_a: Tenant, kind: str, tmp_path: Any, settings: Any
) -> None:
    from django.utils.module_loading import import_string

    from apps.chat.demo import platform_demo_config

    sim = import_string(SIMULATORS[kind])(state_dir=tmp_path).start()
    settings.HUB_CONNECTOR_CA_BUNDLE = sim.ca_bundle
    try:
        settings_, credentials = platform_demo_config(kind, sim.describe())
        data = {"name": f"{kind} bot", "kind": kind, "default_locale": "en", "platform-endpoint_region": "eu"}
        data |= {f"platform-{k}": v for k, v in {**settings_, **credentials}.items()}
        response = alice_client.post(console_url("channel-create", tenant_a) + f"?kind={kind}", data)
        assert response.status_code == 302, response.content.decode()[:2000]
        channel = Channel.objects.get(tenant=tenant_a, name=f"{kind} bot")
        connection = connection_of(tenant_a, channel.platform_connection_id)
        assert connection is not None and connection.kind == kind
        with tenant_context(tenant_a):
            stored = connection.secrets
        assert {k: stored.get(k) for k in credentials} == credentials
        page = alice_client.get(response["Location"]).content.decode()
        assert all(secret not in page for secret in credentials.values())
        assert f"/hooks/channels/{channel.pk}/" in page
        tested = alice_client.post(console_url("channel-platform-test", tenant_a, channel.pk), follow=True)
        assert tested.status_code == 200 and "Connected" in tested.content.decode()
    finally:
        sim.stop()
