"""Channel setup through the management API: platform account (write-only secrets), webhook URL, widget key
rotate, origins, identity mode and secret; audited; other tenant 404, viewer 403; OpenAPI documents it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.chat.models import Channel
from apps.chat.services.channel_setup import channel_create_with_platform
from apps.tenants.models import Tenant
from connectors.whatsapp.simulator import WhatsAppSimulator
from tests.channels_console.helpers import (
    audit_actions,
    audit_changes,
    connection_of,
    identity_secret,
    wa_account,
)
from tests.fixtures.auth import issue_token, token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(alice_api: APIClient) -> APIClient:
    return alice_api


def base(tenant: Tenant) -> str:
    return f"/api/v1/tenants/{tenant.slug}/channels/"


def test_create_whatsapp_with_platform_and_never_return_secrets(
    api: APIClient, tenant_a: Tenant, wa_sim: WhatsAppSimulator
) -> None:
    settings_, credentials = wa_account(wa_sim)
    body = {"name": "WA", "kind": "whatsapp", "platform": {"settings": settings_, "credentials": credentials}}
    response = api.post(base(tenant_a), body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    channel = Channel.objects.get(pk=data["id"])
    assert data["webhook_url"] == f"http://testserver/hooks/channels/{channel.pk}/"
    assert data["platform"]["kind"] == "whatsapp"
    assert data["platform"]["credentials_set"] == {
        "access_token": True,
        "app_secret": True,
        "verify_token": True,
    }
    assert data["platform"]["settings"]["phone_number_id"] == wa_sim.phone_number_id
    text = json.dumps(data)
    for secret in credentials.values():
        assert secret not in text
    assert connection_of(tenant_a, channel.platform_connection_id) is not None
    listing = api.get(base(tenant_a)).json()
    assert all(s not in json.dumps(listing) for s in credentials.values())


def test_patch_platform_keeps_blank_secrets_and_audits(
    api: APIClient, tenant_a: Tenant, wa_sim: WhatsAppSimulator
) -> None:
    settings_, credentials = wa_account(wa_sim)
    created = api.post(
        base(tenant_a),
        {"name": "WA", "kind": "whatsapp", "platform": {"settings": settings_, "credentials": credentials}},
        format="json",
    ).json()
    response = api.patch(
        f"{base(tenant_a)}{created['id']}/",
        {"platform": {"settings": settings_, "credentials": {"verify_token": "new-token", "app_secret": ""}}},
        format="json",
    )
    assert response.status_code == 200, response.content
    channel = Channel.objects.get(pk=created["id"])
    connection = connection_of(tenant_a, channel.platform_connection_id)
    from apps.core.context import tenant_context

    with tenant_context(tenant_a):
        assert connection is not None
        assert connection.secrets["verify_token"] == "new-token"
        assert connection.secrets["app_secret"] == wa_sim.app_secret
    assert "connection.credentials_changed" in audit_actions(tenant_a)


def test_platform_errors_are_400_and_nothing_is_left(api: APIClient, tenant_a: Tenant) -> None:
    response = api.post(
        base(tenant_a),
        {"name": "WA", "kind": "whatsapp", "platform": {"settings": {}, "credentials": {}}},
        format="json",
    )
    assert response.status_code == 400
    assert not Channel.objects.filter(tenant=tenant_a).exists()
    web = api.post(
        base(tenant_a), {"name": "Site", "kind": "web", "platform": {"settings": {"x": 1}}}, format="json"
    )
    assert web.status_code == 400


def test_web_channel_key_origins_identity(api: APIClient, tenant_a: Tenant) -> None:
    created = api.post(
        base(tenant_a),
        {"name": "Site", "kind": "web", "allowed_origins": ["https://shop.example.com"]},
        format="json",
    ).json()
    assert created["widget_key"].startswith("hubw_") and created["webhook_url"] is None
    assert created["allowed_origins"] == ["https://shop.example.com"]
    url = f"{base(tenant_a)}{created['id']}/"
    rotated = api.post(f"{url}widget-key/rotate/")
    assert rotated.status_code == 200 and rotated.json()["widget_key"] != created["widget_key"]
    assert "channel.widget_key_rotated" in audit_actions(tenant_a)
    bad = api.patch(url, {"allowed_origins": ["shop.example.com", "https://x.example/path"]}, format="json")
    assert bad.status_code == 400 and "allowed_origins" in json.dumps(bad.json())
    no_secret = api.patch(url, {"identity_mode": "hmac"}, format="json")
    assert no_secret.status_code == 400
    secret = "s" * 40
    ok = api.patch(url, {"identity_mode": "hmac", "identity_secret": secret}, format="json")
    assert ok.status_code == 200, ok.content
    assert ok.json()["identity_mode"] == "hmac" and ok.json()["identity_secret_set"] is True
    assert secret not in json.dumps(ok.json()) and "identity_secret" not in ok.json()
    assert identity_secret(Channel.objects.get(pk=created["id"])) == secret
    assert all(secret not in json.dumps(c) for c in audit_changes(tenant_a, "channel.setup_changed"))
    read_only = api.patch(url, {"widget_key": "hubw_mine"}, format="json")
    assert read_only.status_code == 400


def test_platform_kind_refuses_identity_and_rotate(api: APIClient, tenant_a: Tenant) -> None:
    created = api.post(base(tenant_a), {"name": "Slack", "kind": "slack"}, format="json").json()
    assert created["platform"] is None and created["webhook_url"].endswith(
        f"/hooks/channels/{created['id']}/"
    )
    url = f"{base(tenant_a)}{created['id']}/"
    assert api.patch(url, {"identity_mode": "jwt"}, format="json").status_code == 400
    assert api.post(f"{url}widget-key/rotate/").status_code == 400


def test_other_tenant_gets_404_everywhere(api: APIClient, tenant_a: Tenant, tenant_b: Tenant) -> None:
    other = channel_create_with_platform(tenant=tenant_b, channel_data={"name": "B", "kind": "web"})
    key = other.widget_key
    for path in (f"{base(tenant_a)}{other.pk}/", f"{base(tenant_a)}{other.pk}/widget-key/rotate/"):
        assert api.get(path).status_code in (404, 405)
        assert api.post(path).status_code in (404, 405)
        assert api.patch(path, {"identity_mode": "none"}, format="json").status_code in (404, 405)
    assert api.post(f"{base(tenant_a)}{other.pk}/widget-key/rotate/").status_code == 404
    assert Channel.objects.get(pk=other.pk).widget_key == key


def test_viewer_gets_403(tenant_a: Tenant, bob: Any) -> None:
    channel = channel_create_with_platform(tenant=tenant_a, channel_data={"name": "A", "kind": "web"})
    viewer = token_client(issue_token(tenant_a, bob))
    assert viewer.post(f"{base(tenant_a)}{channel.pk}/widget-key/rotate/").status_code == 403
    assert (
        viewer.patch(f"{base(tenant_a)}{channel.pk}/", {"allowed_origins": []}, format="json").status_code
        == 403
    )


def test_openapi_documents_the_setup_fields(api: APIClient) -> None:
    schema = api.get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    channel = components["Channel"]["properties"]
    assert {"webhook_url", "widget_key", "allowed_origins", "identity_mode", "platform"} <= set(channel)
    assert "identity_secret" not in channel
    create = components["ChannelCreate"]["properties"]
    assert {"platform", "identity_secret", "allowed_origins"} <= set(create)
    assert any(p.endswith("/widget-key/rotate/") for p in schema["paths"])


def test_list_loads_platform_accounts_in_one_query(
    api: APIClient, tenant_a: Tenant, wa_sim: WhatsAppSimulator
) -> None:
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    settings_, credentials = wa_account(wa_sim)
    platform = {"settings": settings_, "credentials": credentials}

    def count() -> int:
        with CaptureQueriesContext(connections["default"]) as control:
            response = api.get(base(tenant_a))
        assert response.status_code == 200
        return len(control.captured_queries)

    channel_create_with_platform(
        tenant=tenant_a, channel_data={"name": "W0", "kind": "whatsapp"}, platform=platform
    )
    count()
    before = count()
    for n in (1, 2):
        channel_create_with_platform(
            tenant=tenant_a, channel_data={"name": f"W{n}", "kind": "whatsapp"}, platform=platform
        )
    assert count() == before
    rows = api.get(base(tenant_a)).json()["results"]
    assert all(r["platform"]["kind"] == "whatsapp" for r in rows)
