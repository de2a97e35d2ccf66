"""Re-pointing a connection must not exfiltrate its stored secrets (issue 14), attacked over API and console.

A grantee (a per-object permission on one connection) changes the endpoint URL to a listener they control
and runs "Test": the listener must receive no stored credential, whichever way the URL was changed.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.integrations.demo import demo_config
from apps.integrations.models import Connection
from apps.integrations.services.connections import connection_grant
from apps.tenants.models import Role, Tenant
from apps.tenants.services import membership_add
from tests.factories import UserFactory
from tests.fakes.openai_server import FakeOpenAI, FakeRequest
from tests.fixtures.auth import session_client
from tests.fixtures.simulators import StartFake
from tests.integrations.helpers import make_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def listener(openai_server: StartFake) -> FakeOpenAI:
    """The attacker's endpoint on loopback (loopback is allow-listed outside production, as in the demo)."""
    return openai_server(FakeOpenAI)


def listener_root(listener: FakeOpenAI) -> str:
    return listener.base_url.removesuffix("/v1")


def leaked(requests: list[FakeRequest], secret: str) -> bool:
    """Whether `secret` appears in any raw header or body the listener saw, plainly or Basic-encoded."""
    encoded = [secret, base64.b64encode(secret.encode()).decode()]
    for request in requests:
        raw = " ".join(f"{k}: {v}" for k, v in request.headers.items()) + request.body.decode("latin-1")
        for header in request.headers.values():
            if header.lower().startswith("basic "):
                raw += base64.b64decode(header[6:]).decode("latin-1")
        if any(value in raw for value in encoded):
            return True
    return False


def detail_url(tenant: Tenant, connection: Connection) -> str:
    return f"/api/v1/tenants/{tenant.slug}/connections/{connection.pk}/"


def stored(tenant: Tenant, connection: Connection) -> Connection:
    with tenant_context(tenant):
        return Connection.objects.get(pk=connection.pk)


def test_grantee_repointing_over_the_api_must_enter_credentials_again(
    tenant_a: Tenant, alice: Any, bob: Any, sims: dict[str, Any], listener: FakeOpenAI
) -> None:
    connection = make_connection(tenant_a, sims, "sap", name="ERP")
    settings, credentials = demo_config("sap", sims["sap"])
    password = credentials["password"]
    connection_grant(connection=connection, tenant=tenant_a, user=bob, actor=alice)
    client = session_client(bob, verified=False)
    detail = detail_url(tenant_a, connection)
    evil = {**settings, "endpoint_url": f"{listener_root(listener)}/sap/bc/srt/scs"}

    refused = client.patch(detail, {"settings": evil}, format="json")
    assert refused.status_code == 400, refused.json()
    assert "enter the credentials again" in str(refused.json())
    assert stored(tenant_a, connection).settings["endpoint_url"] == settings["endpoint_url"]
    with tenant_context(tenant_a):
        denied = AuditEvent.objects.get(action="connection.repoint_refused")
    assert (denied.outcome, denied.actor_id) == ("denied", bob.pk)
    tested = client.post(f"{detail}test/")
    assert tested.status_code == 200
    assert tested.json()["ok"] is True  # still the simulator it was entered for
    assert listener.requests == []

    # With credentials of their own the change goes through: the stored password is gone, never sent.
    moved = client.patch(
        detail, {"settings": evil, "credentials": {"password": "bobs-own-pw"}}, format="json"
    )
    assert moved.status_code == 200, moved.json()
    tested = client.post(f"{detail}test/")
    assert tested.status_code == 200
    assert tested.json()["ok"] is False
    assert listener.requests  # the test did go to bob's endpoint ...
    assert not leaked(listener.requests, password)  # ... without the password entered for the simulator
    assert leaked(listener.requests, "bobs-own-pw")
    with tenant_context(tenant_a):
        event = AuditEvent.objects.filter(action="connection.credentials_changed").latest("seq")
    assert event.changes["fields"] == ["password"]
    assert event.changes["entered_for"][1] == [
        f"http://127.0.0.1:{listener_root(listener).rsplit(':', 1)[1]}"
    ]
    assert password not in str(event.changes)


def test_grantee_repointing_in_the_console_must_enter_credentials_again(
    client: Client, tenant_a: Tenant, alice: Any, bob: Any, sims: dict[str, Any], listener: FakeOpenAI
) -> None:
    connection = make_connection(tenant_a, sims, "hubspot", name="CRM")
    _settings, credentials = demo_config("hubspot", sims["hubspot"])
    connection_grant(connection=connection, tenant=tenant_a, user=bob, actor=alice)
    client.force_login(bob)
    edit = reverse("integrations:connection-edit", kwargs={"tenant_slug": tenant_a.slug, "pk": connection.pk})
    response = client.post(
        edit,
        {"name": "CRM", "endpoint_region": "eu", "base_url": listener_root(listener), "auth": "private_app"},
    )
    assert response.status_code == 400
    assert "enter the credentials again" in response.content.decode()
    assert stored(tenant_a, connection).settings["base_url"] == sims["hubspot"]["base_url"]
    test = reverse("integrations:connection-test", kwargs={"tenant_slug": tenant_a.slug, "pk": connection.pk})
    client.post(test, HTTP_HX_REQUEST="true")
    assert listener.requests == []
    assert not leaked(listener.requests, credentials["access_token"])


def test_stored_secrets_never_reach_an_endpoint_they_were_not_entered_for(
    tenant_a: Tenant, connor: Any, sims: dict[str, Any], listener: FakeOpenAI
) -> None:
    """Defence in depth: settings changed behind the services' back (a restore, SQL) still cannot leak."""
    connection = make_connection(tenant_a, sims, "servicenow", name="ITSM")
    with tenant_context(tenant_a):
        Connection.objects.filter(pk=connection.pk).update(
            settings={**connection.settings, "instance_url": listener_root(listener)}
        )
    tested = session_client(connor, verified=False).post(f"{detail_url(tenant_a, connection)}test/")
    assert tested.status_code == 200
    assert tested.json()["ok"] is False
    assert "Enter the credentials again" in tested.json()["message"]
    assert listener.requests == []


def test_another_tenants_admin_cannot_repoint(
    tenant_a: Tenant, tenant_b: Tenant, sims: dict[str, Any], listener: FakeOpenAI
) -> None:
    connection = make_connection(tenant_a, sims, "sap", name="ERP")
    settings, _credentials = demo_config("sap", sims["sap"])
    evil = {**settings, "endpoint_url": f"{listener_root(listener)}/x"}
    mallory = UserFactory.create(username="mallory")
    membership_add(tenant=tenant_b, user=mallory, role=Role.ADMIN)
    client = session_client(mallory)
    body = {"settings": evil, "credentials": {"password": "x1234"}}
    for tenant in (tenant_a, tenant_b):
        assert client.patch(detail_url(tenant, connection), body, format="json").status_code == 404
        assert client.post(f"{detail_url(tenant, connection)}test/").status_code == 404
    assert stored(tenant_a, connection).settings["endpoint_url"] == settings["endpoint_url"]
    assert listener.requests == []


@pytest.mark.parametrize("endpoint", ["ftp://erp.example.com/x", "erp.example.com", "http://"])
def test_an_endpoint_that_is_not_a_url_is_a_field_error(
    tenant_a: Tenant, connor: Any, sims: dict[str, Any], endpoint: str
) -> None:
    connection = make_connection(tenant_a, sims, "sap", name="ERP")
    settings, _credentials = demo_config("sap", sims["sap"])
    response = session_client(connor, verified=False).patch(
        detail_url(tenant_a, connection),
        {"settings": {**settings, "endpoint_url": endpoint}, "credentials": {"password": "pw-1234"}},
        format="json",
    )
    assert response.status_code == 400
    assert "Enter a full URL" in str(response.json()["settings"]["endpoint_url"])


def test_plain_http_endpoints_are_refused_when_https_is_required(
    settings: Any, tenant_a: Tenant, connor: Any, sims: dict[str, Any]
) -> None:
    connection = make_connection(tenant_a, sims, "sap", name="ERP")  # the simulator speaks http
    sap_settings, _credentials = demo_config("sap", sims["sap"])
    settings.HUB_OUTBOUND_REQUIRE_HTTPS = True
    client = session_client(connor, verified=False)
    response = client.patch(
        detail_url(tenant_a, connection),
        {
            "settings": {**sap_settings, "endpoint_url": "http://erp.example.com/sap"},
            "credentials": {"password": "p-1234"},
        },
        format="json",
    )
    assert response.status_code == 400
    assert "https://" in str(response.json()["settings"]["endpoint_url"])
    # A connection saved before the setting was on is refused at request time: the password stays home.
    tested = client.post(f"{detail_url(tenant_a, connection)}test/")
    assert tested.json()["ok"] is False
    assert "use https" in tested.json()["message"]


def test_sync_does_not_send_stored_secrets_to_a_moved_endpoint(
    tenant_a: Tenant, sims: dict[str, Any], listener: FakeOpenAI
) -> None:
    from apps.integrations.services.sync import sync_stream

    connection = make_connection(tenant_a, sims, "hubspot", name="CRM")
    with tenant_context(tenant_a):
        Connection.objects.filter(pk=connection.pk).update(
            settings={**connection.settings, "base_url": listener_root(listener)}
        )
        run = sync_stream(connection_id=connection.pk, stream="contacts", trigger="manual")
    assert run is not None
    assert run.status == "failed"
    assert "Enter the credentials again" in run.error
    assert listener.requests == []
