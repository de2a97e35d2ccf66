"""Connections API: CRUD and test by session and token, write-only secrets, 400/403/404, schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.integrations.services.connections import connection_grant
from apps.tenants.models import Tenant
from tests.api.conftest import issue_token, session_client, token_client
from tests.integrations.conftest import KINDS, demo_config, make_connection

pytestmark = pytest.mark.django_db


def base(tenant: Tenant) -> str:
    return f"/api/v1/tenants/{tenant.slug}/connections/"


@pytest.fixture
def api(connor: Any) -> APIClient:
    return session_client(connor, verified=False)


def _no_secrets(payload: Any, secrets: list[str]) -> None:
    text = str(payload)
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize("kind", KINDS)
def test_create_get_patch_test(api: APIClient, tenant_a: Tenant, sims: dict[str, Any], kind: str) -> None:
    settings, credentials = demo_config(kind, sims[kind])
    body = {
        "name": f"API {kind}",
        "kind": kind,
        "endpoint_region": "eu",
        "settings": settings,
        "credentials": credentials,
    }
    created = api.post(base(tenant_a), body, format="json")
    assert created.status_code == 201, created.json()
    data = created.json()
    assert "credentials" not in data
    assert all(data["credentials_set"][name] for name in credentials)
    _no_secrets(data, list(credentials.values()))
    detail = f"{base(tenant_a)}{data['id']}/"

    got = api.get(detail)
    assert got.status_code == 200
    _no_secrets(got.json(), list(credentials.values()))

    patched = api.patch(
        detail, {"name": f"API {kind} EU", "credentials": dict.fromkeys(credentials, "")}, format="json"
    )
    assert patched.status_code == 200, patched.json()
    assert patched.json()["name"] == f"API {kind} EU"

    tested = api.post(f"{detail}test/")
    assert tested.status_code == 200
    assert tested.json()["ok"] is True, tested.json()
    assert tested.json()["connection"]["last_test_ok"] is True
    _no_secrets(tested.json(), list(credentials.values()))

    listed = api.get(base(tenant_a))
    assert listed.status_code == 200
    assert [c["name"] for c in listed.json()["results"]] == [f"API {kind} EU"]
    _no_secrets(listed.json(), list(credentials.values()))


def test_wrong_credentials_test_reports_the_vendor_error(
    api: APIClient, tenant_a: Tenant, sims: dict[str, Any]
) -> None:
    connection = make_connection(tenant_a, sims, "hubspot")
    detail = f"{base(tenant_a)}{connection.pk}/"
    assert (
        api.patch(detail, {"credentials": {"access_token": "pat-wrong-0000"}}, format="json").status_code
        == 200
    )
    result = api.post(f"{detail}test/").json()
    assert result["ok"] is False
    assert "The vendor refused the credentials" in result["message"]
    assert "pat-wrong-0000" not in str(result)


def test_unknown_fields_and_bad_settings_are_400(
    api: APIClient, tenant_a: Tenant, sims: dict[str, Any]
) -> None:
    settings, credentials = demo_config("sap", sims["sap"])
    body = {
        "name": "x",
        "kind": "sap",
        "endpoint_region": "eu",
        "settings": settings,
        "credentials": credentials,
    }
    response = api.post(base(tenant_a), {**body, "colour": "red"}, format="json")
    assert response.status_code == 400
    assert response.json()["colour"] == ["Unknown field."]
    response = api.post(base(tenant_a), {**body, "settings": {**settings, "colour": "red"}}, format="json")
    assert response.status_code == 400
    assert "colour" in response.json()["settings"]
    response = api.post(base(tenant_a), {**body, "credentials": {"pin": "1"}}, format="json")
    assert response.status_code == 400
    assert set(response.json()["credentials"]) == {"pin", "password"}
    response = api.post(base(tenant_a), {**body, "field_map": {"invoices": {}}}, format="json")
    assert response.status_code == 400
    assert "Unknown stream" in response.json()["field_map"][0]
    connection = make_connection(tenant_a, sims, "sap")
    response = api.patch(f"{base(tenant_a)}{connection.pk}/", {"kind": "hubspot"}, format="json")
    assert response.status_code == 400
    assert response.json()["kind"] == ["This field cannot be changed."]


def test_enable_and_delete(api: APIClient, tenant_a: Tenant, sims: dict[str, Any]) -> None:
    connection = make_connection(tenant_a, sims, "sap")
    detail = f"{base(tenant_a)}{connection.pk}/"
    assert api.patch(detail, {"enabled": False}, format="json").json()["enabled"] is False
    assert api.delete(detail).status_code == 204
    assert api.get(detail).status_code == 404


def test_token_client(tenant_a: Tenant, connor: Any, sims: dict[str, Any]) -> None:
    client = token_client(issue_token(tenant_a, connor))
    make_connection(tenant_a, sims, "sap")
    assert client.get(base(tenant_a)).status_code == 200


def test_viewer_403(tenant_a: Tenant, bob: Any, sims: dict[str, Any]) -> None:
    connection = make_connection(tenant_a, sims, "sap")
    client = session_client(bob, verified=False)
    detail = f"{base(tenant_a)}{connection.pk}/"
    assert client.get(base(tenant_a)).status_code == 403
    assert client.post(base(tenant_a), {}, format="json").status_code == 403
    assert client.get(detail).status_code == 403
    assert client.patch(detail, {"name": "x"}, format="json").status_code == 403
    assert client.delete(detail).status_code == 403
    assert client.post(f"{detail}test/").status_code == 403


def test_object_permission_over_the_api(tenant_a: Tenant, alice: Any, bob: Any, sims: dict[str, Any]) -> None:
    shared = make_connection(tenant_a, sims, "sap", name="Shared")
    other = make_connection(tenant_a, sims, "sap", name="Other")
    connection_grant(connection=shared, tenant=tenant_a, user=bob, actor=alice)
    client = session_client(bob, verified=False)
    assert [c["name"] for c in client.get(base(tenant_a)).json()["results"]] == ["Shared"]
    assert (
        client.patch(f"{base(tenant_a)}{shared.pk}/", {"name": "Shared ERP"}, format="json").status_code
        == 200
    )
    assert client.get(f"{base(tenant_a)}{other.pk}/").status_code == 403
    assert client.delete(f"{base(tenant_a)}{shared.pk}/").status_code == 403


def test_charlie_and_anonymous(
    tenant_a: Tenant, tenant_b: Tenant, charlie: Any, sims: dict[str, Any]
) -> None:
    connection = make_connection(tenant_a, sims, "sap")
    detail = f"{base(tenant_a)}{connection.pk}/"
    charlie_session = session_client(charlie, verified=False)
    charlie_token = token_client(issue_token(tenant_b, charlie))
    for client in (charlie_session, charlie_token):
        assert client.get(base(tenant_a)).status_code == 404
        assert client.post(base(tenant_a), {"name": "x"}, format="json").status_code == 404
        assert client.get(detail).status_code == 404
        assert client.patch(detail, {"name": "pwned"}, format="json").status_code == 404
        assert client.delete(detail).status_code == 404
        assert client.post(f"{detail}test/").status_code == 404
    # Under charlie's own tenant, A's connection id does not exist either.
    assert charlie_session.get(f"{base(tenant_b)}{connection.pk}/").status_code == 404
    anonymous = APIClient()
    for response in (anonymous.get(base(tenant_a)), anonymous.get(detail), anonymous.post(f"{detail}test/")):
        assert response.status_code == 401
    with tenant_context(tenant_a):
        assert Connection.objects.get(pk=connection.pk).name == connection.name


def test_schema_documents_connections(tmp_path: Path) -> None:
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    text = target.read_text()
    assert "/api/v1/tenants/{slug}/connections/{id}/test/:" in text
    assert "credentials_set" in text
