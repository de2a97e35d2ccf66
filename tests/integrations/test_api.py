"""Connections API: CRUD and test by session and token, write-only secrets, 400/403/404, schema. The generic
resource checks come from tests/fixtures/api.py; the vendor-facing ones run against the simulators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.integrations.demo import demo_config
from apps.integrations.models import Connection
from apps.integrations.services.connections import connection_grant
from apps.tenants.models import Tenant
from tests.fixtures.api import APIResourceTests
from tests.fixtures.auth import session_client
from tests.fixtures.integrations import offline_connection
from tests.integrations.helpers import KINDS, make_connection

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


class TestConnectionsAPI(APIResourceTests):
    list_view = "integrations-api:connection-list"
    detail_view = "integrations-api:connection-detail"
    actions = ("integrations-api:connection-test",)
    manager = "connor"
    viewer_reads = False
    instance_data = {"name": "ERP", "kind": "sap", "enabled": True}
    create_data = {
        "name": "New ERP",
        "kind": "sap",
        "endpoint_region": "eu",
        "settings": {"endpoint_url": "https://sap.example/soap", "username": "hub"},
        "credentials": {"password": "new-sap-password"},
    }
    write_only = frozenset({"credentials"})
    update_data = {"name": "Old ERP", "enabled": False}

    @pytest.fixture
    def instance(self, tenant_a: Tenant) -> Connection:
        return offline_connection(tenant_a, "sap", name="ERP")

    @pytest.mark.parametrize("kind", KINDS)
    def test_create_get_patch_test(
        self, api: APIClient, tenant_a: Tenant, sims: dict[str, Any], kind: str
    ) -> None:
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
        self, api: APIClient, tenant_a: Tenant, sims: dict[str, Any]
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
        self, api: APIClient, tenant_a: Tenant, sims: dict[str, Any]
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
        response = api.post(
            base(tenant_a), {**body, "settings": {**settings, "colour": "red"}}, format="json"
        )
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

    def test_object_permission_over_the_api(
        self, tenant_a: Tenant, alice: Any, bob: Any, sims: dict[str, Any]
    ) -> None:
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

    def test_schema_documents_connections(self, tmp_path: Path) -> None:
        target = tmp_path / "schema.yaml"
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
        text = target.read_text()
        assert "/api/v1/tenants/{slug}/connections/{id}/test/:" in text
        assert "credentials_set" in text
