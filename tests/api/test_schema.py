"""The OpenAPI schema generates cleanly (warnings are errors here) and documents the management API."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client

from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db

PATHS = {
    "/api/v1/tenants/": {"get", "post"},
    "/api/v1/tenants/{slug}/": {"get", "patch"},
    "/api/v1/tenants/{slug}/members/": {"get", "post"},
    "/api/v1/tenants/{slug}/members/{id}/": {"get", "patch", "delete"},
    "/api/v1/tenants/{slug}/invitations/": {"get", "post"},
    "/api/v1/tenants/{slug}/invitations/{id}/revoke/": {"post"},
    # Issue 22 (auditapi)
    "/api/v1/tenants/{slug}/audit/events/": {"get"},
    "/api/v1/tenants/{slug}/audit/events/{seq}/": {"get"},
    "/api/v1/tenants/{slug}/audit/verify/": {"post"},
    # Issue 22 (dsrapi)
    "/api/v1/tenants/{slug}/data-subject-requests/": {"get", "post"},
    "/api/v1/tenants/{slug}/data-subject-requests/{id}/": {"get"},
    "/api/v1/tenants/{slug}/data-subject-requests/{id}/start/": {"post"},
    "/api/v1/tenants/{slug}/data-subject-requests/{id}/extend/": {"post"},
    "/api/v1/tenants/{slug}/data-subject-requests/{id}/reject/": {"post"},
    "/api/v1/tenants/{slug}/data-subject-requests/{id}/handle/": {"post"},
    "/api/v1/tenants/{slug}/data-subject-requests/{id}/archive/": {"get"},
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


# --- the docs page: our own static files, public only when configured (issue 14) --------------------------
def _assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', html)


def test_swagger_ui_uses_only_same_origin_assets_and_no_inline_code(client: Client) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assets = _assets(html)
    assert len(assets) >= 4 and "/api/docs/?script=" in assets
    for url in assets:
        assert url.startswith("/") and not url.startswith("//"), url  # no CDN, no other origin
        if url.startswith(settings.STATIC_URL):
            assert finders.find(url.removeprefix(settings.STATIC_URL)), url  # shipped, not a dead link
    assert "<style" not in html and not re.search(r"<script(?![^>]*\bsrc=)", html)  # CSP: no inline code
    assert "script-src 'self'" in response["Content-Security-Policy"]
    script = client.get("/api/docs/", {"script": ""})
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")


@pytest.mark.parametrize("url", ["/api/docs/", "/api/docs/?script=", "/api/schema/"])
def test_private_api_docs_refuse_anonymous_callers(
    client: Client, settings: Any, alice: Any, url: str
) -> None:
    settings.HUB_API_DOCS_PUBLIC = False  # the production default
    response = client.get(url)
    assert response.status_code == 401
    assert b"paths" not in response.content and b"swagger-ui" not in response.content
    login_verified(client, alice)
    assert client.get(url).status_code == 200
    settings.HUB_API_DOCS_PUBLIC = True
    assert Client().get(url).status_code == 200


def test_production_settings_keep_api_docs_private() -> None:
    """A real request through the production settings (no HUB_API_DOCS_PUBLIC): anonymous gets 401."""
    from tests.fixtures.processes import PRODUCTION_ENV, manage

    code = (
        "from django.conf import settings; from django.test import Client; "
        "print(settings.HUB_API_DOCS_PUBLIC, "
        "*(Client().get(u, secure=True, HTTP_HOST='hub.example.com').status_code "
        "for u in ('/api/docs/', '/api/schema/')))"
    )
    result = manage(PRODUCTION_ENV, "shell", "-c", code)
    assert result.stdout.splitlines()[-1].split() == ["False", "401", "401"], result.stderr[-2000:]
    published = manage({**PRODUCTION_ENV, "HUB_API_DOCS_PUBLIC": "true"}, "shell", "-c", code)
    assert published.stdout.splitlines()[-1].split()[:2] == ["True", "200"], published.stderr[-2000:]


def test_every_operation_documents_the_unavailable_answer(client: Client) -> None:
    """A stalled dependency or the admission gate can answer any request 503 + Retry-After (issue 15)."""
    schema = client.get("/api/schema/", {"format": "json"}).json()
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert len(operations) > 20  # the management and chat APIs, not an empty schema
    for path, method, operation in operations:
        response = operation["responses"].get("503")
        assert response is not None, (method, path)
        assert response["headers"]["Retry-After"]["schema"]["type"] == "integer"
        assert response["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ServiceUnavailable"
        }
    assert schema["components"]["schemas"]["ServiceUnavailable"]["required"] == ["detail"]
