"""Channels console: list/create/edit/disable, keys (shown once, revoke, rotate), roles, cross-tenant 404s."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.chat.models import ApiKey, Channel
from apps.core.confirm import CONFIRMED
from apps.tenants.models import Tenant
from tests.fixtures.chat import IssuedKey

pytestmark = pytest.mark.django_db


def url(name: str, tenant: Tenant, pk: Any = None) -> str:
    kwargs: dict[str, Any] = {"tenant_slug": tenant.slug}
    if pk is not None:
        kwargs["pk"] = pk
    return reverse(f"chat:{name}", kwargs=kwargs)


def test_empty_state_and_navigation(alice_client: Client, tenant_a: Tenant) -> None:
    response = alice_client.get(url("channel-list", tenant_a))
    assert response.status_code == 200
    page = response.content.decode()
    assert "No channels yet" in page
    assert url("channel-create", tenant_a) in page
    home = alice_client.get(reverse("console:tenant-home", kwargs={"tenant_slug": tenant_a.slug}))
    assert url("channel-list", tenant_a) in home.content.decode()


def test_create_edit_disable(alice_client: Client, tenant_a: Tenant) -> None:
    form = alice_client.get(url("channel-create", tenant_a))
    assert form.status_code == 200
    response = alice_client.post(
        url("channel-create", tenant_a),
        {"name": "Slack", "kind": "slack", "default_locale": "de", "allowed_actions": ["handoff"]},
    )
    assert response.status_code == 302
    channel = Channel.objects.get(tenant=tenant_a, name="Slack")
    assert (channel.kind, channel.default_locale, channel.allowed_actions) == ("slack", "de", ["handoff"])
    assert response["Location"] == url("channel-detail", tenant_a, channel.pk)
    detail = alice_client.get(response["Location"]).content.decode()
    assert "No keys yet" in detail
    response = alice_client.post(
        url("channel-detail", tenant_a, channel.pk),
        {"name": "Slack EU", "kind": "slack", "default_locale": "en", "content_region": "us"},
    )
    assert response.status_code == 302
    channel.refresh_from_db()
    assert (channel.name, channel.allowed_actions, channel.content_region) == ("Slack EU", [], "us")
    alice_client.post(url("channel-enable", tenant_a, channel.pk), CONFIRMED)
    channel.refresh_from_db()
    assert channel.enabled is False
    listing = alice_client.get(url("channel-list", tenant_a)).content.decode()
    assert "Slack EU" in listing and "Disabled" in listing
    alice_client.post(url("channel-enable", tenant_a, channel.pk), {"enabled": "on"})
    channel.refresh_from_db()
    assert channel.enabled is True


def test_bad_input_shows_field_errors(alice_client: Client, tenant_a: Tenant, channel_a: Channel) -> None:
    response = alice_client.post(
        url("channel-create", tenant_a), {"name": "Website", "kind": "web", "default_locale": "en"}
    )
    assert response.status_code == 400
    assert "A channel with this name already exists." in response.content.decode()
    response = alice_client.post(
        url("channel-create", tenant_a), {"name": "", "kind": "fax", "default_locale": "xx"}
    )
    assert response.status_code == 400
    assert Channel.objects.filter(tenant=tenant_a).count() == 1


def test_key_shown_once_then_only_its_prefix(
    alice_client: Client, tenant_a: Tenant, channel_a: Channel
) -> None:
    response = alice_client.post(
        url("channel-key-create", tenant_a, channel_a.pk),
        {"name": "Widget", "scopes": ["chat"], "expires": "never"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    key = ApiKey.objects.get(channel=channel_a)
    page = response.content.decode()
    plaintext = page.split('id="key-secret" type="text" readonly value="')[1].split('"')[0]
    assert plaintext.startswith(key.prefix + "_")
    assert 'hx-swap-oob="true"' in page  # the key table refreshes next to the secret
    detail = alice_client.get(url("channel-detail", tenant_a, channel_a.pk)).content.decode()
    assert key.prefix in detail
    assert plaintext not in detail
    # Without htmx: a full page with the secret, still never stored.
    response = alice_client.post(
        url("channel-key-create", tenant_a, channel_a.pk),
        {"name": "Script", "scopes": ["transcripts"], "expires": "30"},
    )
    assert response.status_code == 201
    assert "API key created" in response.content.decode()
    assert ApiKey.objects.get(channel=channel_a, name="Script").expires_at is not None


def test_key_form_errors(alice_client: Client, tenant_a: Tenant, channel_a: Channel) -> None:
    response = alice_client.post(
        url("channel-key-create", tenant_a, channel_a.pk), {"name": "", "scopes": []}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200  # htmx swaps 2xx only; the form comes back with its errors
    assert response["HX-Retarget"] == "#key-form"
    assert "This field is required." in response.content.decode()
    response = alice_client.post(
        url("channel-key-create", tenant_a, channel_a.pk), {"name": "k", "scopes": ["x"]}
    )
    assert response.status_code == 400
    assert not ApiKey.objects.filter(channel=channel_a).exists()


def test_revoke_and_rotate(alice_client: Client, tenant_a: Tenant, api_key_a: IssuedKey) -> None:
    key = api_key_a.key
    response = alice_client.post(
        url("key-rotate", tenant_a, key.pk), {**CONFIRMED, "overlap_hours": "1"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 201
    assert "New key for" in response.content.decode()
    key.refresh_from_db()
    assert key.expires_at is not None
    successor = ApiKey.objects.exclude(pk=key.pk).get()
    response = alice_client.post(url("key-revoke", tenant_a, successor.pk), CONFIRMED)
    assert response.status_code == 302
    successor.refresh_from_db()
    assert successor.revoked_at is not None
    response = alice_client.post(
        url("key-rotate", tenant_a, successor.pk), {**CONFIRMED, "overlap_hours": "24"}
    )
    assert response.status_code == 302  # a revoked key cannot be rotated: a message, nothing issued
    assert ApiKey.objects.count() == 2
    response = alice_client.post(url("key-rotate", tenant_a, key.pk), {**CONFIRMED, "overlap_hours": "99999"})
    assert response.status_code == 302
    assert ApiKey.objects.count() == 2


def test_viewer_gets_403(client: Client, bob: Any, tenant_a: Tenant, api_key_a: IssuedKey) -> None:
    client.force_login(bob)
    channel = api_key_a.key.channel
    assert client.get(url("channel-list", tenant_a)).status_code == 403
    assert client.get(url("channel-detail", tenant_a, channel.pk)).status_code == 403
    assert client.post(url("key-revoke", tenant_a, api_key_a.key.pk)).status_code == 403
    assert ApiKey.objects.get(pk=api_key_a.key.pk).revoked_at is None


def test_charlie_gets_404_everywhere(
    client: Client, charlie: Any, tenant_a: Tenant, tenant_b: Tenant, api_key_a: IssuedKey
) -> None:
    client.force_login(charlie)
    channel = api_key_a.key.channel
    key = api_key_a.key
    for tenant in (tenant_a, tenant_b):  # A's slug, and A's ids under his own tenant's slug
        checks = [
            ("get", url("channel-detail", tenant, channel.pk)),
            ("post", url("channel-detail", tenant, channel.pk)),
            ("post", url("channel-enable", tenant, channel.pk)),
            ("post", url("channel-key-create", tenant, channel.pk)),
            ("post", url("key-revoke", tenant, key.pk)),
            ("post", url("key-rotate", tenant, key.pk)),
        ]
        if tenant == tenant_a:
            checks += [("get", url("channel-list", tenant)), ("get", url("channel-create", tenant))]
        for method, target in checks:
            status = getattr(client, method)(target, {"name": "pwned", "overlap_hours": "0"}).status_code
            # charlie is a viewer in B: under B's slug the role check may answer first (403), never 200.
            assert status == 404 or (tenant == tenant_b and status == 403), (method, target, status)
    key.refresh_from_db()
    channel.refresh_from_db()
    assert (key.revoked_at, key.expires_at, channel.name) == (None, None, "Website")
    assert ApiKey.objects.count() == 1
