"""The OpenAPI schema generates cleanly (warnings are errors here) and documents the management API."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db

PATHS = {
    "/api/v1/tenants/": {"get", "post"},
    "/api/v1/tenants/{slug}/": {"get", "patch"},
    "/api/v1/tenants/{slug}/members/": {"get", "post"},
    "/api/v1/tenants/{slug}/members/{id}/": {"get", "patch", "delete"},
    "/api/v1/tenants/{slug}/invitations/": {"get", "post"},
    "/api/v1/tenants/{slug}/invitations/{id}/revoke/": {"post"},
}


def test_schema_generates_valid_and_without_warnings(tmp_path: Path) -> None:
    # --fail-on-warn turns drf-spectacular's warnings (printed, not raised) into a failure.
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert "/api/v1/tenants/{slug}/members/{id}/" in target.read_text()


def test_schema_endpoint_lists_the_management_api(client: Client) -> None:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    for path, methods in PATHS.items():
        assert path in schema["paths"], path
        assert set(schema["paths"][path]) >= methods, path
    assert schema["components"]["securitySchemes"]["managementToken"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "hubm_<prefix>_<secret>",
        "description": schema["components"]["securitySchemes"]["managementToken"]["description"],
    }
    members = schema["paths"]["/api/v1/tenants/{slug}/members/"]
    assert {p["name"] for p in members["get"]["parameters"]} >= {"slug", "role", "q", "limit", "offset"}
    # Adding by e-mail always invites (202): no 201 with the account of an existing user.
    assert set(members["post"]["responses"]) >= {"202", "400", "403", "404"}
    assert "201" not in members["post"]["responses"]


def test_swagger_ui_loads(client: Client) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
